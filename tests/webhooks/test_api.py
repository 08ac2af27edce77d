"""The webhook endpoints' API: the secret shown once and stored encrypted, each key's own
endpoints (another's is a 404), bad URLs refused, production's refusals at registration."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.api_keys.schemas import Scope
from app.core.crypto import Keyring
from app.core.settings import Environment, Settings
from app.main import create_app
from app.models import WebhookEndpoint
from app.webhooks.targets import is_public
from tests.conftest import make_key
from tests.helpers import headers
from tests.webhooks.conftest import URL, register
from workers.celery_app import celery_app
from workers.schedule import beat_schedule


async def test_the_secret_is_shown_once_and_stored_encrypted(
    client: httpx.AsyncClient,
    marketplace_key: str,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    created = await register(
        client, marketplace_key, "https://hooks.example/in", types=["trade.filled"]
    )
    assert created["secret"].startswith("whsec_")
    assert created["types"] == ["trade.filled"] and created["enabled"] is True
    listed = (await client.get(URL, headers=headers(marketplace_key))).json()
    one = (await client.get(f"{URL}/{created['id']}", headers=headers(marketplace_key))).json()
    assert [item["id"] for item in listed["items"]] == [created["id"]]
    assert "secret" not in listed["items"][0] and "secret" not in one
    async with sessionmaker() as session:
        row = await session.scalar(select(WebhookEndpoint))
    assert row is not None and created["secret"] not in row.secret_ciphertext
    assert (
        Keyring.parse(settings.fernet_keyring_text()).decrypt(row.secret_ciphertext)
        == (created["secret"])
    )
    rotated = await client.post(
        f"{URL}/{created['id']}/rotate-secret", headers=headers(marketplace_key)
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != created["secret"]


async def test_another_key_cannot_see_or_touch_an_endpoint(
    client: httpx.AsyncClient,
    settings: Settings,
    marketplace_key: str,
    developer_key: str,
    admin_key: str,
) -> None:
    created = await register(client, marketplace_key, "https://hooks.example/in")
    other_marketplace = await make_key(settings, Scope.marketplace, "other", "other-market")
    path = f"{URL}/{created['id']}"
    # The endpoint is its marketplace's: a second key of it (a rotation) manages it too.
    same_marketplace = await make_key(settings, Scope.marketplace, "rotated")
    assert (await client.get(path, headers=headers(same_marketplace))).status_code == 200
    for key in (other_marketplace, developer_key):
        for method, suffix, body in (
            ("GET", "", None),
            ("PATCH", "", {"enabled": False}),
            ("DELETE", "", None),
            ("POST", "/rotate-secret", None),
            ("GET", "/deliveries", None),
            ("POST", "/replay", {"after": "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA"}),
        ):
            response = await client.request(method, path + suffix, json=body, headers=headers(key))
            assert response.status_code == 404, (method, suffix, response.text)
            assert response.json()["error"]["code"] == "NOT_FOUND"
        assert (await client.get(URL, headers=headers(key))).json()["items"] == []
    # Admin sees and manages every endpoint.
    assert (await client.get(path, headers=headers(admin_key))).status_code == 200
    patched = await client.patch(
        path, json={"types": ["risk.paused"], "enabled": False}, headers=headers(admin_key)
    )
    assert patched.json()["types"] == ["risk.paused"] and patched.json()["enabled"] is False
    assert (await client.delete(path, headers=headers(marketplace_key))).status_code == 204
    assert (await client.get(path, headers=headers(marketplace_key))).status_code == 404


async def test_every_key_of_a_developer_manages_its_endpoints(
    client: httpx.AsyncClient, developer_key: str, settings: Settings
) -> None:
    created = await register(client, developer_key, "http://127.0.0.1:9/hook")
    other_developer = await make_key(settings, Scope.developer, "other developer")
    got = await client.get(f"{URL}/{created['id']}", headers=headers(other_developer))
    assert got.status_code == 404


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://hooks.example/in", "not an http(s) URL"),
        ("hooks.example/in", "not an http(s) URL"),
        ("https://hooks.example/" + "a" * 2048, "longer than 2048 characters"),
    ],
)
async def test_a_url_that_is_not_http_or_too_long_is_a_422(
    client: httpx.AsyncClient, marketplace_key: str, url: str, why: str
) -> None:
    response = await client.post(URL, json={"url": url}, headers=headers(marketplace_key))
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["loc"] == "body.url" and why in error["details"][0]["message"]


async def test_an_unknown_event_type_is_a_422(
    client: httpx.AsyncClient, marketplace_key: str
) -> None:
    response = await client.post(
        URL,
        json={"url": "https://hooks.example/in", "types": ["trade.nope"]},
        headers=headers(marketplace_key),
    )
    assert response.status_code == 422


@pytest.fixture
async def production_client(app: object, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API under production's rules (after `app` emptied the tables)."""
    production = settings.model_copy(
        update={"environment": Environment.production, "allow_unsigned_principals": True}
    )
    application = create_app(production)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield http


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example/in",
        "https://127.0.0.1/in",
        "https://10.1.2.3/in",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/in",
        "https://[::ffff:10.0.0.1]/in",
        "https://localhost/in",
    ],
)
async def test_production_refuses_plain_http_and_internal_addresses(
    production_client: httpx.AsyncClient, settings: Settings, url: str
) -> None:
    key = await make_key(settings, Scope.marketplace)
    response = await production_client.post(URL, json={"url": url}, headers=headers(key))
    assert response.status_code == 422, response.text
    assert response.json()["error"]["details"][0]["loc"] == "body.url"


async def test_production_registers_a_public_https_address(
    production_client: httpx.AsyncClient, settings: Settings
) -> None:
    key = await make_key(settings, Scope.marketplace)
    created = await register(production_client, key, "https://93.184.216.34/in")
    refused = await production_client.patch(
        f"{URL}/{created['id']}", json={"url": "https://192.168.1.1/in"}, headers=headers(key)
    )
    assert refused.status_code == 422


def test_public_means_none_of_the_internal_ranges() -> None:
    internal = [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "64:ff9b::a00:1",
        "2002:a00:1::1",
    ]
    assert not any(is_public(ipaddress.ip_address(a)) for a in internal)
    assert all(is_public(ipaddress.ip_address(a)) for a in ("93.184.216.34", "2606:4700::1111"))


def test_beat_and_the_worker_know_the_webhook_tasks(settings: Settings) -> None:
    celery_app.loader.import_default_modules()
    assert {"webhooks.dispatch", "webhooks.deliver", "webhooks.retry"} <= set(celery_app.tasks)
    scheduled = {entry["task"] for entry in beat_schedule(settings).values()}
    assert {"webhooks.dispatch", "webhooks.retry"} <= scheduled
