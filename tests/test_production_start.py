"""A refused production start: one plain message and a non-zero exit, from every entry point.

The commands run as the operator runs them, in processes of their own, from a directory
without an `.env`.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import delete

from app.api_keys.schemas import Scope
from app.api_keys.service import create_api_key, revoke_api_key
from app.core.db import create_engine, create_sessionmaker, session_scope
from app.core.migrations import migrate
from app.core.principal_assertions import Algorithm, AssertionMode
from app.core.settings import Settings
from app.core.signing import generate_seed
from app.main import create_app
from app.models import ApiKey, Marketplace
from tests.assertion_signers import Ed25519Signer
from tests.conftest import REDIS_URL, fresh_mariadb_database

ROOT = Path(__file__).resolve().parent.parent
A_SECRET = "sk-never-echo-this-secret"
FERNET_KEYS = f"k1:{Fernet.generate_key().decode()}"
SIGNING_KEYS = f"k1:{generate_seed()}"


def run(args: list[str], cwd: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", str(cwd)),
        "PYTHONPATH": str(ROOT),
        **settings,
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


ENTRY_POINTS = {
    "migrate": ["-m", "app.cli", "migrate"],
    "serve": ["-m", "app.cli", "serve", "--port", "0"],
    "worker": ["-m", "app.cli", "worker"],
    "beat": ["-m", "app.cli", "beat"],
    "uvicorn factory": ["-m", "uvicorn", "--factory", "app.main:create_app", "--port", "0"],
}


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_a_refused_production_start_is_one_plain_message(entry_point: str, tmp_path: Path) -> None:
    # The embedded defaults with a secret in the environment: pydantic's own report would be a
    # traceback that repeats every input value.
    refused = run(
        ENTRY_POINTS[entry_point], tmp_path, ENVIRONMENT="production", OPENAI_API_KEY=A_SECRET
    )
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert A_SECRET not in refused.stderr + refused.stdout
    assert refused.stderr.startswith("botmarket cannot start")
    assert "ENVIRONMENT=production refuses" in refused.stderr
    # Every wrong setting, each on its own line with why.
    for named, why in [
        ("FERNET_KEYS is missing", "botmarket keys generate"),
        ("SIGNING_KEYS is missing", "botmarket keys generate-signing"),
        ("DATABASE_URL is SQLite", "one writer at a time"),
        ("REDIS_URL is not set", "rate-limit governor"),
        ("CELERY_BROKER_URL is a SQLite broker", "production needs Redis"),
        ("METRICS_PORT is not set", "public API port"),
    ]:
        assert any(named in line and why in line for line in refused.stderr.splitlines())


def test_a_malformed_setting_is_named_by_its_variable(tmp_path: Path) -> None:
    refused = run(ENTRY_POINTS["serve"], tmp_path, METRICS_PORT="nine thousand")
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "METRICS_PORT: Input should be a valid integer" in refused.stderr


# -- marketplace keys whose assertion mode is off --------------------------------------------


@pytest.fixture(scope="module")
def production_database() -> Iterator[str]:
    with fresh_mariadb_database() as url:
        migrate(url)
        yield url


def production(database_url: str, **changes: object) -> Settings:
    return Settings(
        environment="production",
        database_url=database_url,
        redis_url=REDIS_URL,
        fernet_keys=FERNET_KEYS,
        signing_keys=SIGNING_KEYS,
        metrics_port=9100,
        **changes,
    )


def replace_keys(database_url: str, *keys: str) -> None:
    """Only these marketplaces, each with one key of the same name: `name:assertion mode`,
    `+revoked` for a marketplace whose key is revoked."""
    asyncio.run(_replace_keys(database_url, keys))


async def _replace_keys(database_url: str, keys: tuple[str, ...]) -> None:
    engine = create_engine(database_url, pool=False)
    public_key = base64.b64decode(Ed25519Signer(b"\x01" * 32).public_key_b64)
    try:
        async with session_scope(create_sessionmaker(engine)) as session:
            await session.execute(delete(ApiKey))
            await session.execute(delete(Marketplace))
            for spec in keys:
                name, _, rest = spec.partition(":")
                mode = AssertionMode(rest.removesuffix("+revoked"))
                signed = mode is not AssertionMode.off
                assertion_keys = [(Algorithm.ed25519, public_key)] if signed else []
                created = await create_api_key(
                    session,
                    name,
                    Scope.marketplace,
                    None,
                    assertion_keys,
                    mode,
                    marketplace=name,
                    create_marketplace=True,
                )
                if rest.endswith("+revoked"):
                    await revoke_api_key(session, created.row.id)
    finally:
        await engine.dispose()


def test_production_refuses_a_marketplace_without_assertions_naming_it(
    production_database: str,
) -> None:
    replace_keys(production_database, "canister-a:off", "canister-b:optional", "canister-c:off")
    with pytest.raises(SystemExit) as refused:
        create_app(production(production_database))
    message = str(refused.value)
    assert "assertion mode is off" in message and "ALLOW_UNSIGNED_PRINCIPALS=true" in message
    assert "canister-a" in message and "canister-c" in message
    assert "canister-b" not in message


def test_production_serves_signed_or_keyless_marketplaces_and_unsigned_ones_when_allowed(
    production_database: str,
) -> None:
    replace_keys(production_database, "signed:required", "optional:optional", "revoked:off+revoked")
    create_app(production(production_database))
    replace_keys(production_database, "unsigned:off")
    create_app(production(production_database, allow_unsigned_principals=True))
    # Development never asks the database.
    create_app(Settings(database_url=production_database))


def test_botmarket_serve_refuses_an_unsigned_marketplace_plainly(
    production_database: str, tmp_path: Path
) -> None:
    replace_keys(production_database, "trusting-canister:off")
    refused = run(
        ENTRY_POINTS["serve"],
        tmp_path,
        ENVIRONMENT="production",
        DATABASE_URL=production_database,
        REDIS_URL=REDIS_URL,
        FERNET_KEYS=FERNET_KEYS,
        SIGNING_KEYS=SIGNING_KEYS,
        METRICS_PORT="9100",
    )
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr
    assert "trusting-canister" in refused.stderr


def test_a_production_start_that_cannot_read_its_database_says_so_plainly(
    tmp_path: Path,
) -> None:
    # A database never migrated: the check of the keys' assertion modes cannot read them, and
    # the start refuses with one plain message rather than a traceback.
    with fresh_mariadb_database() as unmigrated:
        refused = run(
            ENTRY_POINTS["serve"],
            tmp_path,
            ENVIRONMENT="production",
            DATABASE_URL=unmigrated,
            REDIS_URL=REDIS_URL,
            FERNET_KEYS=FERNET_KEYS,
            SIGNING_KEYS=SIGNING_KEYS,
            METRICS_PORT="9100",
        )
    assert refused.returncode != 0
    assert "Traceback" not in refused.stderr, refused.stderr
    assert "the database could not be read" in refused.stderr
