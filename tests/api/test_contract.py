"""Every contract path: success, 401, 403, 404 and 422, on SQLite and on MariaDB."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.core.settings import Settings
from app.main import create_app
from tests.helpers import fake_binance_key, headers, new_principal

UNKNOWN_ID = "0" * 32


async def create_bot(client: httpx.AsyncClient, key: str, **body: object) -> dict:
    response = await client.post(
        "/api/v1/bots", json={"name": "trend", **body}, headers=headers(key)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def listed_bot(client: httpx.AsyncClient, key: str, **body: object) -> dict:
    """A bot listed on the marketplace: what a renter may subscribe to."""
    bot = await create_bot(client, key, **body)
    listing = await client.post(
        f"/api/v1/bots/{bot['id']}/registrations", json={"price": "1"}, headers=headers(key)
    )
    assert listing.status_code == 201, listing.text
    return bot


async def store_credentials(
    client: httpx.AsyncClient, key: str, principal: str, *, testnet: bool
) -> httpx.Response:
    api_key, api_secret = fake_binance_key()
    return await client.put(
        "/api/v1/credentials/binance",
        json={"api_key": api_key, "api_secret": api_secret, "testnet": testnet},
        headers=headers(key, principal),
    )


async def subscribe(
    client: httpx.AsyncClient, key: str, principal: str, bot_id: str, **body: object
) -> httpx.Response:
    payload = {
        "bot_id": bot_id,
        "symbol": "BTCUSDT",
        "timeframe": "1h",
        "mode": "paper",
        "quote_amount": "100.5",
        **body,
    }
    return await client.post("/api/v1/subscriptions", json=payload, headers=headers(key, principal))


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str) and isinstance(body["error"]["details"], list)


# --- API keys -----------------------------------------------------------------------------


async def test_api_keys_lifecycle(client: httpx.AsyncClient, admin_key: str) -> None:
    created = await client.post(
        "/api/v1/api-keys", json={"name": "dev", "scope": "developer"}, headers=headers(admin_key)
    )
    assert created.status_code == 201
    body = created.json()
    assert body["scope"] == "developer" and body["owner"] and body["prefix"] in body["key"]
    new_key = body["key"]
    assert (await client.get("/api/v1/bots", headers=headers(new_key))).status_code == 200

    listed = (await client.get("/api/v1/api-keys", headers=headers(admin_key))).json()
    assert "key" not in listed["items"][0] and "key_digest" not in listed["items"][0]

    revoked = await client.delete(f"/api/v1/api-keys/{body['id']}", headers=headers(admin_key))
    assert revoked.status_code == 204
    assert_error(await client.get("/api/v1/bots", headers=headers(new_key)), 401, "UNAUTHENTICATED")
    after = {
        k["id"]: k
        for k in (await client.get("/api/v1/api-keys", headers=headers(admin_key))).json()["items"]
    }
    assert after[body["id"]]["revoked_at"] is not None


async def test_api_keys_errors(
    client: httpx.AsyncClient, admin_key: str, developer_key: str, marketplace_key: str
) -> None:
    assert_error(await client.get("/api/v1/api-keys"), 401, "UNAUTHENTICATED")
    assert_error(
        await client.get("/api/v1/api-keys", headers=headers("bmk_abcdefgh_wrong")),
        401,
        "UNAUTHENTICATED",
    )
    for key in (developer_key, marketplace_key):
        assert_error(await client.get("/api/v1/api-keys", headers=headers(key)), 403, "FORBIDDEN")
    assert_error(
        await client.delete(f"/api/v1/api-keys/{UNKNOWN_ID}", headers=headers(admin_key)),
        404,
        "NOT_FOUND",
    )
    bad = await client.post(
        "/api/v1/api-keys", json={"name": "", "scope": "root"}, headers=headers(admin_key)
    )
    assert_error(bad, 422, "VALIDATION_ERROR")
    assert {d["loc"] for d in bad.json()["error"]["details"]} == {"body.name", "body.scope"}


# --- Bots and registrations ---------------------------------------------------------------


async def test_bot_with_only_a_name_is_a_working_default(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    assert bot["version"] == 1 and bot["status"] == "active"
    strategy = bot["strategy"]
    assert strategy["ensemble"]["threshold"] == "0.25" and "rsi" in strategy["indicators"]
    assert strategy["voters"] == []  # no LLM provider is configured in the tests
    fetched = await client.get(f"/api/v1/bots/{bot['id']}", headers=headers(marketplace_key))
    assert fetched.json() == bot
    catalogue = await client.get("/api/v1/bots", headers=headers(marketplace_key))
    assert [b["id"] for b in catalogue.json()["items"]] == [bot["id"]]


async def test_changing_the_strategy_makes_a_new_version(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    url = f"/api/v1/bots/{bot['id']}"
    renamed = await client.patch(url, json={"name": "renamed"}, headers=headers(developer_key))
    assert renamed.json()["version"] == 1 and renamed.json()["name"] == "renamed"
    same = await client.patch(url, json={"strategy": {}}, headers=headers(developer_key))
    assert same.json()["version"] == 1
    changed = await client.patch(
        url, json={"strategy": {"ensemble": {"threshold": "0.4"}}}, headers=headers(developer_key)
    )
    assert changed.json()["version"] == 2
    assert changed.json()["version_id"] != bot["version_id"]


async def test_bot_errors(
    client: httpx.AsyncClient, settings, developer_key: str, marketplace_key: str
) -> None:
    from app.api_keys.schemas import Scope
    from tests.conftest import make_key

    bot = await create_bot(client, developer_key)
    other_developer = await make_key(settings, Scope.developer, "other")
    url = f"/api/v1/bots/{bot['id']}"
    assert_error(await client.post("/api/v1/bots", json={"name": "x"}), 401, "UNAUTHENTICATED")
    assert_error(
        await client.post("/api/v1/bots", json={"name": "x"}, headers=headers(marketplace_key)),
        403,
        "FORBIDDEN",
    )
    assert_error(
        await client.patch(url, json={"name": "mine"}, headers=headers(other_developer)),
        404,
        "NOT_FOUND",
    )
    assert_error(
        await client.get(f"/api/v1/bots/{UNKNOWN_ID}", headers=headers(developer_key)),
        404,
        "NOT_FOUND",
    )
    invalid = await client.post(
        "/api/v1/bots",
        json={"name": "x", "strategy": {"ensemble": {"threshold": "2"}, "bogus": 1}},
        headers=headers(developer_key),
    )
    assert_error(invalid, 422, "VALIDATION_ERROR")


async def test_voters_need_a_known_price_and_budgets_stay_under_the_cap(
    client: httpx.AsyncClient, developer_key: str, admin_key: str
) -> None:
    def bot(**strategy: object) -> dict:
        return {"name": "panel", "strategy": strategy}

    unknown = [{"provider": "openai", "model": "gpt-9"}]
    unpriced = await client.post(
        "/api/v1/bots", json=bot(voters=unknown), headers=headers(developer_key)
    )
    assert_error(unpriced, 422, "VALIDATION_ERROR")
    message = unpriced.json()["error"]["message"]
    assert "gpt-9" in message
    assert all(m in message for m in ("gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash"))
    own_price = [{**unknown[0], "price": {"input": "0.15", "output": "0.60"}}]
    # Only an admin prices a voter (tests/bots/test_llm_cost_rules.py).
    priced = await create_bot(client, admin_key, strategy={"voters": own_price})
    assert priced["strategy"]["voters"][0]["price"] == {"input": "0.15", "output": "0.6"}
    assert_error(
        await client.patch(
            f"/api/v1/bots/{priced['id']}",
            json={"strategy": {"voters": unknown}},
            headers=headers(admin_key),
        ),
        422,
        "VALIDATION_ERROR",
    )
    negative = [{**unknown[0], "price": {"input": "-1", "output": "0"}}]
    for strategy in ({"voters": negative}, {"llm_daily_budget_usd": "100.01"}):
        assert_error(
            await client.post("/api/v1/bots", json=bot(**strategy), headers=headers(developer_key)),
            422,
            "VALIDATION_ERROR",
        )
    await create_bot(client, developer_key, strategy={"llm_daily_budget_usd": "100"})


@pytest.fixture
async def panel_client(settings: Settings) -> AsyncIterator[Callable[..., Any]]:
    """A client of the API with every LLM provider configured (and the given prices)."""
    providers = {
        "openai_api_key": SecretStr("k"),
        "anthropic_api_key": SecretStr("k"),
        "gemini_api_key": SecretStr("k"),
        "openai_compatible_base_url": "http://127.0.0.1:9/v1",
    }
    async with contextlib.AsyncExitStack() as stack:

        async def client_with(**prices: dict[str, str]) -> httpx.AsyncClient:
            update = {**providers, "llm_prices": {**settings.llm_prices, **prices}}
            application = create_app(settings.model_copy(update=update))
            await stack.enter_async_context(application.router.lifespan_context(application))
            return await stack.enter_async_context(
                httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=application), base_url="http://test"
                )
            )

        yield client_with


async def test_the_default_panel_is_priced(panel_client, developer_key: str) -> None:
    client = await panel_client()
    voters = (await create_bot(client, developer_key))["strategy"]["voters"]
    assert [(v["provider"], v["model"], v["price"]) for v in voters] == [
        ("openai", "gpt-4o-mini", None),
        ("anthropic", "claude-haiku-4-5", None),
        ("gemini", "gemini-2.5-flash", None),
        # A local model is free unless the service prices it.
        ("openai_compatible", "llama3.1", {"input": "0", "output": "0"}),
    ]
    hosted = await panel_client(**{"llama3.1": {"input": "0.1", "output": "0.2"}})
    voters = (await create_bot(hosted, developer_key))["strategy"]["voters"]
    assert voters[3]["price"] is None


async def test_registrations(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str, admin_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    url = f"/api/v1/bots/{bot['id']}/registrations"
    created = await client.post(url, json={"price": "2.50"}, headers=headers(developer_key))
    assert created.status_code == 201
    assert created.json()["price"] == "2.5" and created.json()["title"] == "trend"
    by_admin = await client.post(url, json={"price": "3"}, headers=headers(admin_key))
    assert by_admin.status_code == 201
    listings = await client.get("/api/v1/registrations", headers=headers(marketplace_key))
    assert len(listings.json()["items"]) == 2
    assert_error(await client.get("/api/v1/registrations"), 401, "UNAUTHENTICATED")
    assert_error(
        await client.post(url, json={"price": "1"}, headers=headers(marketplace_key)),
        403,
        "FORBIDDEN",
    )
    assert_error(
        await client.post(
            f"/api/v1/bots/{UNKNOWN_ID}/registrations",
            json={"price": "1"},
            headers=headers(developer_key),
        ),
        404,
        "NOT_FOUND",
    )
    assert_error(
        await client.post(url, json={"price": "-1"}, headers=headers(developer_key)),
        422,
        "VALIDATION_ERROR",
    )


# --- Principals, credentials, subscriptions -------------------------------------------------


@pytest.mark.parametrize(
    "principal",
    ["2vxsx-fae", "aaaaa-aa", "ryjl3-tyaaa-aaaaa-aaaba-caj", "not a principal", "RYJL3-TYAAA"],
)
async def test_invalid_principals_are_422(
    client: httpx.AsyncClient, marketplace_key: str, principal: str
) -> None:
    response = await client.get(
        "/api/v1/subscriptions", headers=headers(marketplace_key, principal)
    )
    assert_error(response, 422, "INVALID_PRINCIPAL")


async def test_renter_endpoints_need_a_marketplace_key_and_a_principal(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    assert_error(await client.get("/api/v1/credentials"), 401, "UNAUTHENTICATED")
    assert_error(
        await client.get("/api/v1/credentials", headers=headers(developer_key, principal)),
        403,
        "FORBIDDEN",
    )
    missing = await client.get("/api/v1/credentials", headers=headers(marketplace_key))
    assert_error(missing, 422, "VALIDATION_ERROR")
    assert missing.json()["error"]["details"][0]["loc"] == "header.X-Principal-ID"


async def test_credentials_are_stored_masked_and_deleted(
    client: httpx.AsyncClient, marketplace_key: str
) -> None:
    principal = new_principal()
    first = await store_credentials(client, marketplace_key, principal, testnet=True)
    assert first.status_code == 201
    view = first.json()
    assert set(view) == {"exchange", "testnet", "api_key_last4", "created_at", "updated_at"}
    assert (
        await store_credentials(client, marketplace_key, principal, testnet=True)
    ).status_code == 200
    listed = await client.get("/api/v1/credentials", headers=headers(marketplace_key, principal))
    assert len(listed.json()) == 1
    bad_exchange = await client.put(
        "/api/v1/credentials/kraken",
        json={"api_key": "a" * 64, "api_secret": "b" * 64},
        headers=headers(marketplace_key, principal),
    )
    assert_error(bad_exchange, 422, "VALIDATION_ERROR")
    short = await client.put(
        "/api/v1/credentials/binance",
        json={"api_key": "a b", "api_secret": "x"},
        headers=headers(marketplace_key, principal),
    )
    assert_error(short, 422, "VALIDATION_ERROR")
    url = "/api/v1/credentials/binance?testnet=false"
    assert_error(
        await client.delete(url, headers=headers(marketplace_key, principal)), 404, "NOT_FOUND"
    )
    deleted = await client.delete(
        "/api/v1/credentials/binance", headers=headers(marketplace_key, principal)
    )
    assert deleted.status_code == 204
    listed = await client.get("/api/v1/credentials", headers=headers(marketplace_key, principal))
    assert listed.json() == []


async def test_subscription_lifecycle(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    created = await subscribe(client, marketplace_key, principal, bot["id"])
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["status"] == "active" and sub["quote_amount"] == "100.5"
    assert sub["bot_version_id"] == bot["version_id"]
    url = f"/api/v1/subscriptions/{sub['id']}"
    renter = headers(marketplace_key, principal)
    assert (await client.get(url, headers=renter)).json() == sub
    listed = await client.get("/api/v1/subscriptions", headers=renter)
    assert [s["id"] for s in listed.json()["items"]] == [sub["id"]]

    paused = await client.patch(url, json={"status": "paused"}, headers=renter)
    assert paused.json()["status"] == "paused"
    resumed = await client.patch(
        url, json={"status": "active", "risk": {"max_trades_per_day": 3}}, headers=renter
    )
    assert resumed.json()["status"] == "active" and resumed.json()["risk"] == {
        "max_trades_per_day": 3
    }
    cancelled = await client.patch(url, json={"status": "cancelled"}, headers=renter)
    assert cancelled.json()["status"] == "cancelled"
    assert_error(
        await client.patch(url, json={"status": "active"}, headers=renter),
        409,
        "INVALID_STATE_TRANSITION",
    )
    assert_error(
        await client.patch(url, json={"status": "expired"}, headers=renter),
        422,
        "VALIDATION_ERROR",
    )

    for tail in ("trades", "decisions"):
        page = await client.get(f"{url}/{tail}", headers=renter)
        assert page.json() == {"items": [], "next_cursor": None}
    performance = (await client.get(f"{url}/performance", headers=renter)).json()
    assert performance["trade_count"] == 0 and performance["win_rate"] is None
    assert performance["equity"] == "1005"  # the paper wallet: 10 x the quote amount


async def test_subscription_validation(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    # Past the end of datetime once moved to UTC: was an OverflowError, a 500.
    far_future = "9999-12-31T23:59:59-12:00"
    cases = [
        ("symbol", {"symbol": "btcusdt"}),
        ("timeframe", {"timeframe": "2m"}),
        ("quote_amount", {"quote_amount": "0"}),
        ("ends_at", {"ends_at": past}),
        ("ends_at", {"ends_at": far_future}),
        ("ends_at", {"ends_at": "2030-01-01T00:00:00"}),  # no timezone
        ("mode", {"mode": "margin"}),
    ]
    for field, body in cases:
        response = await subscribe(client, marketplace_key, principal, bot["id"], **body)
        assert_error(response, 422, "VALIDATION_ERROR")
        assert response.json()["error"]["details"][0]["loc"] == f"body.{field}"
    sub = (await subscribe(client, marketplace_key, principal, bot["id"])).json()
    patched = await client.patch(
        f"/api/v1/subscriptions/{sub['id']}",
        json={"ends_at": far_future},
        headers=headers(marketplace_key, principal),
    )
    assert_error(patched, 422, "VALIDATION_ERROR")
    precise = await subscribe(
        client, marketplace_key, principal, bot["id"], quote_amount="1.123456789"
    )
    assert_error(precise, 422, "VALIDATION_ERROR")
    unknown = await subscribe(client, marketplace_key, principal, UNKNOWN_ID)
    assert_error(unknown, 404, "NOT_FOUND")


async def test_live_and_testnet_need_matching_credentials(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    refused = await subscribe(client, marketplace_key, principal, bot["id"], mode="testnet")
    assert_error(refused, 422, "CREDENTIALS_REQUIRED")
    assert "testnet=true" in refused.json()["error"]["message"]
    await store_credentials(client, marketplace_key, principal, testnet=True)
    assert_error(
        await subscribe(client, marketplace_key, principal, bot["id"], mode="live"),
        422,
        "CREDENTIALS_REQUIRED",
    )
    sub = (await subscribe(client, marketplace_key, principal, bot["id"], mode="testnet")).json()
    renter = headers(marketplace_key, principal)
    await client.delete("/api/v1/credentials/binance", headers=renter)
    after = (await client.get(f"/api/v1/subscriptions/{sub['id']}", headers=renter)).json()
    assert after["status"] == "paused" and "credentials" in after["status_reason"]
    assert_error(
        await client.patch(
            f"/api/v1/subscriptions/{sub['id']}", json={"status": "active"}, headers=renter
        ),
        422,
        "CREDENTIALS_REQUIRED",
    )
    await store_credentials(client, marketplace_key, principal, testnet=True)
    resumed = await client.patch(
        f"/api/v1/subscriptions/{sub['id']}", json={"status": "active"}, headers=renter
    )
    assert resumed.json()["status"] == "active"


async def test_erasing_a_principal(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    renter = headers(marketplace_key, principal)
    bot = await listed_bot(client, developer_key)
    await store_credentials(client, marketplace_key, principal, testnet=False)
    sub = (await subscribe(client, marketplace_key, principal, bot["id"], mode="live")).json()
    assert (await client.delete("/api/v1/principals/me", headers=renter)).status_code == 204
    assert (await client.get("/api/v1/credentials", headers=renter)).json() == []
    after = (await client.get(f"/api/v1/subscriptions/{sub['id']}", headers=renter)).json()
    assert after["status"] == "cancelled"
    assert_error(await client.delete("/api/v1/principals/me"), 401, "UNAUTHENTICATED")


async def test_pagination_is_stable_and_bounded(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    for _ in range(5):
        await create_bot(client, developer_key)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/api/v1/bots", params=params, headers=headers(marketplace_key))
        ).json()
        seen += [b["id"] for b in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5 and seen == sorted(seen)
    for params in ({"limit": 0}, {"limit": 201}, {"cursor": "!!"}):
        assert_error(
            await client.get("/api/v1/bots", params=params, headers=headers(marketplace_key)),
            422,
            "VALIDATION_ERROR",
        )


@pytest.mark.parametrize("cursor", ["\u00e9", "w6nDqcOp"])
async def test_foreign_cursors_are_422_on_every_list(
    client: httpx.AsyncClient,
    admin_key: str,
    developer_key: str,
    marketplace_key: str,
    cursor: str,
) -> None:
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    sub = (await subscribe(client, marketplace_key, principal, bot["id"])).json()
    renter = headers(marketplace_key, principal)
    for url, key_headers in (
        ("/api/v1/bots", headers(marketplace_key)),
        ("/api/v1/registrations", headers(marketplace_key)),
        ("/api/v1/api-keys", headers(admin_key)),
        ("/api/v1/subscriptions", renter),
        (f"/api/v1/subscriptions/{sub['id']}/trades", renter),
        (f"/api/v1/subscriptions/{sub['id']}/decisions", renter),
    ):
        response = await client.get(url, params={"cursor": cursor}, headers=key_headers)
        assert_error(response, 422, "VALIDATION_ERROR")
        assert response.json()["error"]["details"][0]["loc"] == "query.cursor"


async def test_strategy_decimals_are_bounded_and_canonical(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    for strategy in (
        {"risk": {"max_position_quote": "1e400"}},  # was stored and echoed as "1E+400"
        {"risk": {"daily_loss_limit_quote": "1e400"}},
        {"llm_daily_budget_usd": "1e400"},
        {"indicators": {"rsi": {"weight": "0.123456789"}}},
        {"ensemble": {"threshold": "0.5000000001"}},
        {
            "voters": [
                {"provider": "openai", "model": "m", "price": {"input": "1e-30", "output": 1}}
            ]
        },
        {"risk": {"stop_loss_pct": "NaN"}},
    ):
        response = await client.post(
            "/api/v1/bots", json={"name": "x", "strategy": strategy}, headers=headers(developer_key)
        )
        assert_error(response, 422, "VALIDATION_ERROR")

    bot = await create_bot(
        client,
        developer_key,
        strategy={"risk": {"max_position_quote": "150.50"}, "ensemble": {"threshold": "0.50"}},
    )
    assert bot["strategy"]["risk"]["max_position_quote"] == "150.5"
    assert bot["strategy"]["ensemble"]["threshold"] == "0.5"
    same = await client.patch(
        f"/api/v1/bots/{bot['id']}",
        json={
            "strategy": {"risk": {"max_position_quote": "1.505E+2"}, "ensemble": {"threshold": 0.5}}
        },
        headers=headers(developer_key),
    )
    assert same.json()["version"] == 1, "an equal value spelt otherwise is not a new version"


async def test_subscription_decimals_are_bounded_and_canonical(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    principal = new_principal()
    bot = await listed_bot(client, developer_key)
    for field, body in (
        ("quote_amount", {"quote_amount": "999999999999.99999999"}),  # the cap is 1,000,000
        ("quote_amount", {"quote_amount": "1000000.01"}),
        ("quote_amount", {"quote_amount": "1e400"}),
        ("risk", {"risk": {"max_position_quote": "1e400"}}),
        ("risk", {"risk": {"stop_loss_pct": "0.000000001"}}),
    ):
        response = await subscribe(client, marketplace_key, principal, bot["id"], **body)
        assert_error(response, 422, "VALIDATION_ERROR")
        assert response.json()["error"]["details"][0]["loc"].startswith(f"body.{field}")
    created = await subscribe(
        client,
        marketplace_key,
        principal,
        bot["id"],
        quote_amount="1000000.00",
        risk={"max_position_quote": "150.50", "stop_loss_pct": "2.50"},
    )
    assert created.status_code == 201, created.text
    sub = created.json()
    assert sub["quote_amount"] == "1000000"
    assert sub["risk"] == {"max_position_quote": "150.5", "stop_loss_pct": "2.5"}
