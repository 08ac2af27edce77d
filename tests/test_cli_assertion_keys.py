"""`botmarket api-keys create` with the canister's assertion key, as an operator runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from cryptography.fernet import Fernet
from sqlalchemy import select

from app.core.db import create_engine
from app.models import ApiKey, ApiKeyAssertionKey
from tests.assertion_signers import Secp256k1Signer

ROOT = Path(__file__).resolve().parent.parent


def botmarket(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "FERNET_KEYS": f"cli:{Fernet.generate_key().decode()}",
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def stored(database_url: str, prefix: str) -> tuple[str, list[tuple[str, bytes]]]:
    engine = create_engine(database_url, pool=False)
    async with engine.connect() as connection:
        row = (await connection.execute(select(ApiKey).where(ApiKey.prefix == prefix))).one()
        keys = await connection.execute(
            select(ApiKeyAssertionKey.algorithm, ApiKeyAssertionKey.public_key).where(
                ApiKeyAssertionKey.api_key_id == row.id
            )
        )
        result = row.assertion_mode, [tuple(k) for k in keys]
    await engine.dispose()
    return result  # type: ignore[return-value]


def test_create_with_an_assertion_key(database_url: str) -> None:
    signer = Secp256k1Signer(7)
    done = botmarket(
        database_url,
        *("api-keys", "create", "--name", "canister", "--scope", "marketplace"),
        *("--assertion-key", signer.public_key_b64, "--assertion-alg", "secp256k1"),
    )
    assert done.returncode == 0, done.stderr
    key = done.stdout.strip().splitlines()[-1]
    mode, keys = asyncio.run(stored(database_url, key.split("_")[1]))
    raw = signer._key.get_verifying_key().to_string("compressed")
    assert mode == "required" and keys == [("secp256k1", raw)]


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
