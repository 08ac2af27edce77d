"""`botmarket keys rotate`: old rows keep decrypting, and afterwards all are under the new key."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import select

from app.core.crypto import Keyring
from app.core.db import create_engine, create_sessionmaker
from app.core.settings import Settings
from app.credentials.service import decrypt_for_execution
from app.main import create_app
from app.models import ExchangeCredential, WebhookEndpoint
from tests.helpers import fake_binance_key, headers, new_principal


def run_cli(settings: Settings, fernet_keys: str, *args: str) -> str:
    env = {**os.environ, "DATABASE_URL": settings.database_url, "FERNET_KEYS": fernet_keys}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


async def test_rotation_re_encrypts_every_row_under_the_newest_key(
    client: httpx.AsyncClient, settings: Settings, marketplace_key: str
) -> None:
    old_keyring = settings.fernet_keys.get_secret_value()
    stored = {}
    for testnet in (False, True):
        principal = new_principal()
        api_key, api_secret = fake_binance_key()
        response = await client.put(
            "/api/v1/credentials/binance",
            json={"api_key": api_key, "api_secret": api_secret, "testnet": testnet},
            headers=headers(marketplace_key, principal),
        )
        assert response.status_code == 201
        stored[testnet] = (api_key, api_secret)

    new_key = Fernet.generate_key().decode()
    both = Keyring.parse(f"new:{new_key},{old_keyring}")
    only_new = Keyring.parse(f"new:{new_key}")
    engine = create_engine(settings.database_url, pool=False)
    sessions = create_sessionmaker(engine)
    try:
        async with sessions() as session:
            rows = (await session.scalars(select(ExchangeCredential))).all()
            assert {row.fernet_key_id for row in rows} == {"test"}
            for row in rows:  # still readable once a newer key is added in front
                plain = await decrypt_for_execution(session, both, row.id)
                assert (plain.api_key, plain.api_secret) == stored[row.testnet]

        output = run_cli(settings, f"new:{new_key},{old_keyring}", "keys", "rotate")
        assert output.strip() == (
            "rotated 2 credential(s), 0 stored response(s) and 0 webhook secret(s) to key new"
        )
        again = run_cli(settings, f"new:{new_key},{old_keyring}", "keys", "rotate")
        assert again.strip() == (
            "rotated 0 credential(s), 0 stored response(s) and 0 webhook secret(s) to key new"
        )

        async with sessions() as session:
            rows = (await session.scalars(select(ExchangeCredential))).all()
            assert {row.fernet_key_id for row in rows} == {"new"}
            for row in rows:  # the old key can now be retired
                plain = await decrypt_for_execution(session, only_new, row.id)
                assert (plain.api_key, plain.api_secret) == stored[row.testnet]
                assert stored[row.testnet][1] not in repr(plain)
    finally:
        await engine.dispose()


async def test_api_keys_create_prints_a_working_key_once(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    output = run_cli(
        settings,
        settings.fernet_keys.get_secret_value(),
        "api-keys",
        "create",
        "--name",
        "bootstrap",
        "--scope",
        "admin",
    )
    key = output.strip().splitlines()[-1]
    assert key.startswith("bmk_")
    listed = await client.get("/api/v1/api-keys", headers=headers(key))
    assert listed.status_code == 200
    assert key not in listed.text


async def test_rotation_covers_stored_idempotent_responses(
    client: httpx.AsyncClient, settings: Settings, admin_key: str
) -> None:
    """After a rotation and a restart with only the new key, replays still work (were 500s)."""
    request = {"json": {"name": "m", "scope": "marketplace"}}
    request_headers = headers(admin_key, idempotency_key="rotate-me")
    first = await client.post("/api/v1/api-keys", headers=request_headers, **request)
    assert first.status_code == 201

    new_key = Fernet.generate_key().decode()
    old_keyring = settings.fernet_keys.get_secret_value()
    output = run_cli(settings, f"new:{new_key},{old_keyring}", "keys", "rotate")
    assert output.strip() == (
        "rotated 0 credential(s), 1 stored response(s) and 0 webhook secret(s) to key new"
    )

    restarted = create_app(settings.model_copy(update={"fernet_keys": SecretStr(f"new:{new_key}")}))
    async with restarted.router.lifespan_context(restarted):
        transport = httpx.ASGITransport(app=restarted)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            replay = await http.post("/api/v1/api-keys", headers=request_headers, **request)
    assert replay.status_code == 201, replay.text
    assert replay.content == first.content
    assert replay.headers["idempotent-replayed"] == "true"


async def test_rotation_covers_webhook_secrets(
    client: httpx.AsyncClient, settings: Settings, marketplace_key: str
) -> None:
    """Were left under the old key: once it was retired, no delivery could be signed."""
    created = await client.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/hooks", "types": ["trade.filled"]},
        headers=headers(marketplace_key),
    )
    assert created.status_code == 201, created.text
    endpoint_id = created.json()["id"]
    # A rotated endpoint holds two secrets, the previous one signing for a day more.
    rotated = await client.post(
        f"/api/v1/webhooks/{endpoint_id}/rotate-secret", headers=headers(marketplace_key)
    )
    assert rotated.status_code == 200, rotated.text
    secrets = {created.json()["secret"], rotated.json()["secret"]}

    new_key = Fernet.generate_key().decode()
    old_keyring = settings.fernet_keys.get_secret_value()
    output = run_cli(settings, f"new:{new_key},{old_keyring}", "keys", "rotate")
    assert output.strip() == (
        "rotated 0 credential(s), 0 stored response(s) and 1 webhook secret(s) to key new"
    )
    again = run_cli(settings, f"new:{new_key},{old_keyring}", "keys", "rotate")
    assert again.strip() == (
        "rotated 0 credential(s), 0 stored response(s) and 0 webhook secret(s) to key new"
    )

    only_new = Keyring.parse(f"new:{new_key}")
    engine = create_engine(settings.database_url, pool=False)
    try:
        async with create_sessionmaker(engine)() as session:
            endpoint = await session.get(WebhookEndpoint, endpoint_id)
            assert endpoint is not None and endpoint.fernet_key_id == "new"
            assert endpoint.previous_secret_ciphertext is not None
            assert {
                only_new.decrypt(endpoint.secret_ciphertext),
                only_new.decrypt(endpoint.previous_secret_ciphertext),
            } == secrets
    finally:
        await engine.dispose()
