"""`botmarket api-keys create` and `botmarket marketplaces` with the canister's assertion key,
as an operator runs them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

from app.core.db import create_engine
from app.core.migrations import migrate
from app.core.signing import generate_seed
from app.models import ApiKey, Marketplace, MarketplaceAssertionKey
from tests.assertion_signers import Secp256k1Signer
from tests.conftest import REDIS_URL, fresh_mariadb_database

ROOT = Path(__file__).resolve().parent.parent


# What a production start needs besides the database (app/core/settings.py refuses less).
PRODUCTION = {
    "ENVIRONMENT": "production",
    "REDIS_URL": REDIS_URL,
    "METRICS_PORT": "9100",
    "SIGNING_KEYS": f"cli:{generate_seed()}",
}


def botmarket(
    database_url: str, *args: str, production: bool = False
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FERNET_KEYS": f"cli:{Fernet.generate_key().decode()}",
        "ENVIRONMENT": "development",
        **(PRODUCTION if production else {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def stored(database_url: str, prefix: str) -> tuple[str, str, list[tuple[str, bytes]]]:
    """The key's marketplace: its name, assertion mode and public keys."""
    engine = create_engine(database_url, pool=False)
    async with engine.connect() as connection:
        home = (
            await connection.execute(
                select(Marketplace)
                .join(ApiKey, ApiKey.marketplace_id == Marketplace.id)
                .where(ApiKey.prefix == prefix)
            )
        ).one()
        keys = await connection.execute(
            select(MarketplaceAssertionKey.algorithm, MarketplaceAssertionKey.public_key).where(
                MarketplaceAssertionKey.marketplace_id == home.id
            )
        )
        result = home.name, home.assertion_mode, [tuple(k) for k in keys]
    await engine.dispose()
    return result  # type: ignore[return-value]


def prefix_of(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1].split("_")[1]


def test_create_with_an_assertion_key(database_url: str) -> None:
    signer = Secp256k1Signer(7)
    done = botmarket(
        database_url,
        *("api-keys", "create", "--name", "canister", "--scope", "marketplace"),
        *("--assertion-key", signer.public_key_b64, "--assertion-alg", "secp256k1"),
    )
    name, mode, keys = asyncio.run(stored(database_url, prefix_of(done)))
    raw = signer._key.get_verifying_key().to_string("compressed")
    assert (name, mode, keys) == ("default", "required", [("secp256k1", raw)])
    # A second key of the marketplace, a rotation, needs no re-registration.
    again = botmarket(
        database_url, *("api-keys", "create", "--name", "canister-2", "--scope", "marketplace")
    )
    assert asyncio.run(stored(database_url, prefix_of(again))) == (name, mode, keys)


def test_in_production_a_marketplace_is_created_before_its_keys() -> None:
    with fresh_mariadb_database() as database_url:
        migrate(database_url)
        _create_then_key(database_url)


def _create_then_key(database_url: str) -> None:
    key = ("api-keys", "create", "--name", "k", "--scope", "marketplace", "--marketplace", "icp")
    refused = botmarket(database_url, *key, production=True)
    assert refused.returncode != 0 and "bmk_" not in refused.stdout
    assert "no marketplace is named 'icp'" in refused.stderr
    signer = Secp256k1Signer(9)
    made = botmarket(
        database_url,
        *("marketplaces", "create", "--name", "icp"),
        *("--assertion-key", signer.public_key_b64, "--assertion-alg", "secp256k1"),
        production=True,
    )
    assert made.returncode == 0, made.stderr
    assert "created marketplace icp: assertion mode required" in made.stdout
    name, mode, _ = asyncio.run(
        stored(database_url, prefix_of(botmarket(database_url, *key, production=True)))
    )
    assert (name, mode) == ("icp", "required")
    listed = botmarket(database_url, "marketplaces", "list", production=True)
    assert listed.stdout.splitlines() == ["icp\tassertion mode required"]


def test_a_bad_assertion_key_creates_nothing(database_url: str) -> None:
    for extra in (
        ("--scope", "marketplace", "--assertion-key", "AAAA"),
        ("--scope", "developer", "--assertion-key", Secp256k1Signer(7).public_key_b64),
    ):
        done = botmarket(
            database_url,
            *("api-keys", "create", "--name", "bad", *extra, "--assertion-alg", "secp256k1"),
        )
        assert done.returncode != 0 and "bmk_" not in done.stdout
