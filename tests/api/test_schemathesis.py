"""Schemathesis against the running API, for every role the contract knows.

Each operation of the live /openapi.json gets generated valid and invalid requests from
the admin, the developer, the marketplace (acting for a valid principal) and an anonymous
caller. Whatever it sends, the API must answer no 5xx, only documented status codes, content
types and headers, bodies that fit the documented schema, and every 4xx in the contract's
error shape.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import schemathesis
from cryptography.fernet import Fernet
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.api_keys.schemas import Scope
from app.core.settings import Settings
from app.main import create_app
from tests.conftest import make_key, make_settings
from tests.helpers import new_principal
from tests.sandbox_server import serve_in_thread

ROLES = ("anonymous", "admin", "developer", "marketplace")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@dataclass
class LiveApi:
    url: str
    keys: dict[str, str]
    principal: str
    # Path parameter (or body field) -> an id that exists, so that generated requests also
    # reach the success paths and their response schemas, not only 404s.
    ids: dict[str, str]

    def headers(self, role: str) -> dict[str, str]:
        if role == "anonymous":
            return {}
        headers = {"X-API-Key": self.keys[role]}
        if role == "marketplace":
            # A valid renter, so renter operations get past the principal to their own checks;
            # the principal parser has its own properties (tests/core/test_properties.py).
            headers["X-Principal-ID"] = self.principal
        return headers


@pytest.fixture(scope="module")
def live_api(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApi]:
    """The API under uvicorn on loopback, as a client meets it: real HTTP, its own loop."""
    broker_dir: Path = tmp_path_factory.mktemp("schemathesis")
    # Generated traffic from one key would otherwise spend its minute's budget on 429s.
    settings = make_settings(database_url, broker_dir).model_copy(
        update={"rate_limit_per_minute": 1_000_000}
    )
    keys = {
        role: asyncio.run(make_key(settings, Scope(role), f"schemathesis-{role}"))
        for role in ROLES
        if role != "anonymous"
    }
    spare = asyncio.run(make_key(settings, Scope.marketplace, "schemathesis-spare"))
    principal = new_principal()
    with serve_in_thread(create_app(settings), lifespan="on") as url:
        yield LiveApi(url, keys, principal, _seed(url, keys, principal, spare))


def _seed(url: str, keys: dict[str, str], principal: str, spare_key: str) -> dict[str, str]:
    """A listed bot of the developer's, a paper subscription of the principal's, a key to
    revoke."""
    developer = {"X-API-Key": keys["developer"]}
    with httpx.Client(base_url=url) as http:
        bot = http.post("/api/v1/bots", json={"name": "schemathesis"}, headers=developer)
        listing = http.post(
            f"/api/v1/bots/{bot.json()['id']}/registrations", json={"price": "1"}, headers=developer
        )
        assert listing.status_code == 201, listing.text
        subscription = http.post(
            "/api/v1/subscriptions",
            json={
                "bot_id": bot.json()["id"],
                "symbol": "BTCUSDT",
                "timeframe": "1h",
                "mode": "paper",
                "quote_amount": "100",
            },
            headers={"X-API-Key": keys["marketplace"], "X-Principal-ID": principal},
        )
        listed = http.get("/api/v1/api-keys", headers={"X-API-Key": keys["admin"]})
    assert bot.status_code == subscription.status_code == 201, subscription.text
    (spare,) = [k for k in listed.json()["items"] if spare_key.startswith(f"bmk_{k['prefix']}_")]
    return {"bot_id": bot.json()["id"], "sub_id": subscription.json()["id"], "key_id": spare["id"]}


def _coin(generated: object) -> bool:
    """Heads for half the generated values, the same each time, so a failing case replays."""
    return zlib.crc32(repr(generated).encode("utf-8", "surrogatepass")) % 2 == 0


@pytest.fixture(scope="module", params=ROLES)
def role(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# The document the app serves on /openapi.json (tests/api/test_openapi.py checks they are
# one), built without a database so that collection needs none.
schema = schemathesis.openapi.from_dict(
    create_app(
        Settings(
            database_url="sqlite+aiosqlite:///:memory:",
            fernet_keys=Fernet.generate_key().decode(),
        )
    ).openapi()
)


# The live stream never ends a response that is let in: its own tests read it
# (tests/events/test_stream.py), its refusals included.
@schema.exclude(path="/api/v1/events/stream").parametrize()
@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_the_api_keeps_its_documented_contract(
    case: schemathesis.Case, role: str, live_api: LiveApi
) -> None:
    for place in (case.path_parameters, case.body):
        if isinstance(place, dict):
            for name in place.keys() & live_api.ids.keys():
                if _coin(place[name]):
                    place[name] = live_api.ids[name]
    response = case.call_and_validate(
        base_url=live_api.url, headers=live_api.headers(role), checks=CHECKS
    )
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "details"}, response.text
        assert error["code"].isupper(), response.text


# Regressions: what the run above found, each fixed and pinned here.


@pytest.mark.parametrize("key", [None, "developer"])
async def test_a_body_that_is_not_utf8_is_the_contracts_422(
    client: httpx.AsyncClient, developer_key: str, key: str | None
) -> None:
    sent = {"X-API-Key": developer_key} if key else {}
    # Latin-1 where UTF-8 belongs: FastAPI answered 400 BAD_REQUEST, an undocumented status.
    response = await client.post(
        "/api/v1/bots",
        content='{"name": "café"}'.encode("latin-1"),
        headers={**sent, "Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"] == {
        "code": "VALIDATION_ERROR",
        "message": "the request is not valid",
        "details": [{"loc": "body", "message": "JSON decode error"}],
    }


async def test_the_answers_of_the_request_limits_are_documented(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    # The generated traffic above never reaches the body and header limits: checked here.
    sent = {"X-API-Key": developer_key}
    too_large = await client.post("/api/v1/bots", json={"name": "x" * 70_000}, headers=sent)
    too_many = await client.post(
        "/api/v1/bots",
        json={"name": "limits"},
        headers={**sent, **{f"X-Extra-{i}": "1" for i in range(120)}},
    )
    assert (too_large.status_code, too_many.status_code) == (413, 431)
    operation = schema["/api/v1/bots"]["POST"]
    for response in (too_large, too_many):
        assert str(response.status_code) in operation.definition.raw["responses"]
        operation.validate_response(response)
