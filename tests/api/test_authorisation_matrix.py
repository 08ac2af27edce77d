"""Every /api/v1 route of the app, for every caller, on every target, on real data of two sides.

The callers: no key (and two bad keys), an admin, a developer and marketplace A's key acting
for a renter on side A, and a second developer and marketplace B's key acting for a second
renter on side B; and each marketplace's key acting for the other side's principal, which in
its marketplace is a renter of its own who has nothing. Each side has a bot listed on its
marketplace, exchange credentials, a subscription, a decision, a trade and a backtest its
renter started. A route's path parameters are filled with side A's resource, side B's and a
missing id.

Expected: 401 without a valid key; 403 for a scope the route does not admit; success on what
the caller may reach; 404 for a missing id, and for a resource out of the caller's reach a
404 byte for byte the same as the missing id's. No response to anyone but a side's own renter
ever carries that renter's data.

The routes come from the app itself: a route missing from ENDPOINTS fails the test until it
is classified (one line), and a new path parameter until PATH_PARAMS says how to fill it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI

from app.api_keys.schemas import Scope
from app.core.settings import Settings
from app.trading.execution import Executor, OrderIntent
from app.trading.fills import Side as OrderSide
from tests.api.test_contract import create_bot, subscribe
from tests.backtests.conftest import WINDOW, list_bot
from tests.backtests.conftest import start as start_backtest
from tests.conftest import make_key
from tests.helpers import fake_binance_key, headers, new_principal
from tests.trading.conftest import decision

MISSING_ID = "0" * 32
PARAM = re.compile(r"{(\w+)}")
BAD_KEYS = ("bmk_aaaaaaaa_" + "x" * 43, "not-a-key")


def anyones(caller: Caller, side: Side) -> bool:
    return True


def own_side_or_admins(caller: Caller, side: Side) -> bool:
    return caller.scope is Scope.admin or caller.side is side


def own_sides(caller: Caller, side: Side) -> bool:
    return caller.side is side


def backtestable(caller: Caller, side: Side) -> bool:
    """The bot's developer, an admin, or a renter of a marketplace the bot is listed on: each
    side's bot is on its own (an unlisted one is tests/backtests/test_api.py's)."""
    if caller.scope is Scope.marketplace:
        return caller.market is side
    return caller.scope is Scope.admin or caller.side is side


def started_it(caller: Caller, side: Side) -> bool:
    """Each side's backtest is its renter's: not the bot's developer's, nor an admin's."""
    return caller.scope is Scope.marketplace and caller.side is side


@dataclass(frozen=True)
class Access:
    """Who a route admits, and which side's resources a caller it admits reaches (any other
    being missing to it)."""

    scopes: frozenset[Scope]
    reaches: Callable[[Caller, Side], bool]
    # Scopes shown every renter's data and principal by design (the admin's event feed);
    # everywhere else only the renter's own marketplace sees it, and never the principal.
    sees_renters: frozenset[Scope] = frozenset()


ADMIN = Access(frozenset({Scope.admin}), anyones)
ANY_KEY = Access(frozenset(Scope), anyones)  # the public catalogue
OWNER = Access(frozenset({Scope.admin, Scope.developer}), own_side_or_admins)  # bot owner
RENTER = Access(frozenset({Scope.marketplace}), own_sides)  # a principal's own data
BACKTESTER = Access(frozenset(Scope), backtestable)
STARTER = Access(frozenset(Scope), started_it)  # whoever started it, key and principal
# Every key reads its own share of the events; an event names its renter's principal, and the
# admin's feed holds every renter's events.
FEED = Access(frozenset(Scope), anyones, sees_renters=frozenset({Scope.admin}))
# The live stream with a key: a marketplace key's renters stream with tickets instead.
STREAM = Access(frozenset({Scope.admin, Scope.developer}), anyones)


def own_developer_or_admins(caller: Caller, side: Side) -> bool:
    """Each side's webhook is its developer's (the marketplace key has none here)."""
    return caller.scope is Scope.admin or (caller.scope is Scope.developer and caller.side is side)


WEBHOOKS = Access(frozenset(Scope), own_developer_or_admins)
# The admin, asking first, deletes both sides' webhooks: to their developers they are gone
# by then (an owner deleting its own is tests/webhooks/test_api.py's).
WEBHOOK_DELETE = Access(frozenset(Scope), lambda caller, side: caller.scope is Scope.admin)


@dataclass(frozen=True)
class Endpoint:
    access: Access
    # A valid body, so that a refusal is the route's decision and not the body's validation.
    body: dict[str, Any] | Callable[[World, Caller], dict[str, Any]] | None = None
    status: int | None = None  # on success; by default 201 for POST, 204 for DELETE, else 200
    # A response that never ends once let in (the live stream): only its refusals are tried
    # here, its streams in tests/events/test_stream.py.
    endless: bool = False


ENDPOINTS: dict[str, Endpoint] = {
    "POST /api/v1/api-keys": Endpoint(ADMIN, {"name": "matrix", "scope": "marketplace"}),
    "GET /api/v1/api-keys": Endpoint(ADMIN),
    "POST /api/v1/marketplaces": Endpoint(ADMIN, {"name": "matrix"}),
    "GET /api/v1/marketplaces": Endpoint(ADMIN),
    "PATCH /api/v1/api-keys/{key_id}": Endpoint(ADMIN, {"assertion_mode": "off"}),
    "POST /api/v1/api-keys/{key_id}/assertion-keys": Endpoint(
        ADMIN, {"public_key": "A6EHv/POEL4dcN0Y50vAmWfk1jCbpQ1fHdyGZBJVMbg="}
    ),
    "DELETE /api/v1/api-keys/{key_id}/assertion-keys/{assertion_id}": Endpoint(ADMIN),
    "DELETE /api/v1/api-keys/{key_id}": Endpoint(ADMIN),
    "POST /api/v1/bots": Endpoint(OWNER, {"name": "matrix"}),
    "GET /api/v1/bots": Endpoint(ANY_KEY),
    "GET /api/v1/bots/{bot_id}": Endpoint(ANY_KEY),
    "PATCH /api/v1/bots/{bot_id}": Endpoint(OWNER, {"description": "matrix"}),
    "POST /api/v1/bots/{bot_id}/registrations": Endpoint(OWNER, {"price": "1"}),
    "GET /api/v1/registrations": Endpoint(ANY_KEY),
    "GET /api/v1/bots/{bot_id}/track-record": Endpoint(ANY_KEY),
    "GET /api/v1/bots/{bot_id}/decisions": Endpoint(ANY_KEY),
    "GET /api/v1/bots/{bot_id}/chain": Endpoint(ANY_KEY),
    "GET /api/v1/signing-keys": Endpoint(ANY_KEY),
    "PUT /api/v1/credentials/{exchange}": Endpoint(
        RENTER, {"api_key": "L" * 64, "api_secret": "S" * 64, "testnet": False}, 201
    ),
    "GET /api/v1/credentials": Endpoint(RENTER),
    "DELETE /api/v1/credentials/{exchange}": Endpoint(RENTER),
    "POST /api/v1/subscriptions": Endpoint(
        RENTER,
        # A bot listed on the caller's marketplace (the other's is tests/api/test_tenancy.py's).
        lambda world, caller: {
            "bot_id": (caller.market or world.sides[0]).bot_id,
            "symbol": "BTCUSDT",
            "timeframe": "1h",
            "mode": "paper",
            "quote_amount": "10",
        },
    ),
    "GET /api/v1/subscriptions": Endpoint(RENTER),
    "GET /api/v1/subscriptions/{sub_id}": Endpoint(RENTER),
    "PATCH /api/v1/subscriptions/{sub_id}": Endpoint(RENTER, {"status": "active"}),
    "GET /api/v1/subscriptions/{sub_id}/trades": Endpoint(RENTER),
    "GET /api/v1/subscriptions/{sub_id}/decisions": Endpoint(RENTER),
    "GET /api/v1/subscriptions/{sub_id}/performance": Endpoint(RENTER),
    "DELETE /api/v1/principals/me": Endpoint(RENTER),
    "POST /api/v1/bots/{bot_id}/backtests": Endpoint(BACKTESTER, WINDOW, 202),
    "GET /api/v1/backtests/{backtest_id}": Endpoint(STARTER),
    "DELETE /api/v1/backtests/{backtest_id}": Endpoint(STARTER),
    "GET /api/v1/events": Endpoint(FEED),
    "POST /api/v1/webhooks": Endpoint(WEBHOOKS, {"url": "https://hooks.example/in"}),
    "GET /api/v1/webhooks": Endpoint(WEBHOOKS),
    "GET /api/v1/webhooks/{webhook_id}": Endpoint(WEBHOOKS),
    "PATCH /api/v1/webhooks/{webhook_id}": Endpoint(WEBHOOKS, {"enabled": True}),
    "DELETE /api/v1/webhooks/{webhook_id}": Endpoint(WEBHOOK_DELETE),
    "POST /api/v1/webhooks/{webhook_id}/rotate-secret": Endpoint(WEBHOOKS, status=200),
    "GET /api/v1/webhooks/{webhook_id}/deliveries": Endpoint(WEBHOOKS),
    "POST /api/v1/webhooks/{webhook_id}/replay": Endpoint(
        WEBHOOKS, {"after": "MDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDA"}, 202
    ),
    "POST /api/v1/stream-tickets": Endpoint(RENTER),
    "GET /api/v1/events/stream": Endpoint(STREAM, endless=True),
}


@dataclass
class Side:
    """One side's developer (and bot), renter (and everything rented), and a spare
    marketplace key with an assertion key for the admin's key routes."""

    name: str
    developer: str
    principal: str
    marketplace_key: str
    bot_id: str = ""
    subscription_id: str = ""
    backtest_id: str = ""
    webhook_id: str = ""
    spare_key_id: str = ""
    assertion_key_id: str = ""
    # Whatever identifies the renter or their data: no one else may ever see it.
    renter_data: set[str] = field(default_factory=set)


# How to fill each path parameter: with a side's resource, or a constant that is no one's.
PATH_PARAMS: dict[str, Callable[[Side], str] | str] = {
    "key_id": lambda side: side.spare_key_id,
    "assertion_id": lambda side: side.assertion_key_id,
    "bot_id": lambda side: side.bot_id,
    "sub_id": lambda side: side.subscription_id,
    "backtest_id": lambda side: side.backtest_id,
    "webhook_id": lambda side: side.webhook_id,
    "exchange": "binance",
}


@dataclass(frozen=True)
class Caller:
    name: str
    key: str | None
    scope: Scope | None
    principal: str
    side: Side | None  # whose resources it owns (a developer's bot, a renter's data)
    market: Side | None = None  # a marketplace key's: the side whose marketplace it is


@dataclass
class World:
    sides: tuple[Side, Side]
    callers: list[Caller]


async def seed_side(
    app: FastAPI,
    client: httpx.AsyncClient,
    settings: Settings,
    trader: Executor,
    admin_key: str,
    name: str,
    symbol: str,
) -> Side:
    side = Side(
        name,
        await make_key(settings, Scope.developer, f"dev-{name}"),
        new_principal(),
        await make_key(settings, Scope.marketplace, f"market-{name}", f"market-{name.lower()}"),
    )
    renter = headers(side.marketplace_key, side.principal)
    bot = await create_bot(client, side.developer)
    side.bot_id = bot["id"]
    await list_bot(client, side.developer, bot, f"market-{name.lower()}")
    # A masked key that no id, principal or symbol can contain by chance.
    api_key = fake_binance_key()[0][:60] + f"ZQ{name}{name}"
    stored = await client.put(
        "/api/v1/credentials/binance",
        json={"api_key": api_key, "api_secret": fake_binance_key()[1], "testnet": True},
        headers=renter,
    )
    assert stored.status_code == 201, stored.text
    created = await subscribe(
        client, side.marketplace_key, side.principal, side.bot_id, symbol=symbol
    )
    side.subscription_id = created.json()["id"]
    decision_id = await decision(app, side.subscription_id, "BUY")
    trade = await trader.execute(
        OrderIntent(side.subscription_id, OrderSide.BUY, "matrix", None, "matrix")
    )
    assert trade.status == "filled", trade.reason
    backtest = await start_backtest(client, bot, renter, symbol=symbol)
    assert backtest.status_code == 202, backtest.text
    side.backtest_id = backtest.json()["id"]
    webhook = await client.post(
        "/api/v1/webhooks",
        json={"url": "https://hooks.example/in"},
        headers=headers(side.developer),
    )
    side.webhook_id = webhook.json()["id"]
    public_key = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    spare = await client.post(
        "/api/v1/api-keys",
        json={
            "name": f"spare-{name}",
            "scope": "marketplace",
            # Its own marketplace, whose assertion keys the key routes change.
            "marketplace": f"spare-{name.lower()}",
            "assertion_keys": [{"public_key": base64.b64encode(public_key).decode()}],
            "assertion_mode": "off",
        },
        headers=headers(admin_key),
    )
    side.spare_key_id = spare.json()["id"]
    side.assertion_key_id = spare.json()["assertion_keys"][0]["id"]
    side.renter_data = {
        side.principal,
        side.subscription_id,
        symbol,
        api_key[-4:],
        decision_id,
        trade.id,
        trade.client_order_id,
        side.backtest_id,
    }
    return side


@pytest.fixture
async def world(
    app: FastAPI, client: httpx.AsyncClient, settings: Settings, executor: Executor
) -> World:
    admin = await make_key(settings, Scope.admin, "admin")
    a = await seed_side(app, client, settings, executor, admin, "A", "SOLUSDT")
    b = await seed_side(app, client, settings, executor, admin, "B", "BNBUSDT")
    market = Scope.marketplace
    # Callers other than the marketplace send a principal too: acting for one is refused.
    callers = [
        Caller("no key", None, None, a.principal, None),
        Caller("admin", admin, Scope.admin, a.principal, None),
        Caller("developer A", a.developer, Scope.developer, a.principal, a),
        Caller("developer B", b.developer, Scope.developer, b.principal, b),
        Caller("marketplace A for A", a.marketplace_key, market, a.principal, a, a),
        Caller("marketplace B for B", b.marketplace_key, market, b.principal, b, b),
        # The same principal in another marketplace is another renter, who has nothing.
        Caller("marketplace A for B's principal", a.marketplace_key, market, b.principal, None, a),
        Caller("marketplace B for A's principal", b.marketplace_key, market, a.principal, None, b),
    ]
    return World((a, b), callers)


def classified_routes(app: FastAPI) -> list[tuple[str, str, Endpoint]]:
    """(method, path template, endpoint) of every /api/v1 route, writes that delete last: they
    take away what the other routes are tried on."""
    # The OpenAPI document lists every route the app serves (none is left out of it), and,
    # unlike app.routes since FastAPI 0.16x, without included routers to unwrap.
    routes = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]
    unclassified = [f"{m} {p}" for m, p in routes if f"{m} {p}" not in ENDPOINTS]
    assert not unclassified, (
        f"classify these routes in ENDPOINTS of {__name__} (who may call them, a valid body): "
        f"{unclassified}"
    )
    stale = sorted(set(ENDPOINTS) - {f"{m} {p}" for m, p in routes})
    assert not stale, f"ENDPOINTS names routes the app does not have: {stale}"
    unfillable = sorted(
        {name for _, path in routes for name in PARAM.findall(path)} - set(PATH_PARAMS)
    )
    assert not unfillable, f"say in PATH_PARAMS how to fill these path parameters: {unfillable}"
    # The erasure goes very last: it takes the renter's credentials and backtests with it.
    ordered = sorted(
        routes, key=lambda route: (route[0] == "DELETE", route[1] == "/api/v1/principals/me")
    )
    return [(m, p, ENDPOINTS[f"{m} {p}"]) for m, p in ordered]


def test_every_route_is_classified(app: FastAPI) -> None:
    assert len(classified_routes(app)) == len(ENDPOINTS)


def fill(path: str, side: Side | None) -> str:
    """The path with each resource of `side`, or with missing ids where side is None."""

    def value(match: re.Match[str]) -> str:
        how = PATH_PARAMS[match.group(1)]
        if isinstance(how, str):
            return how
        return how(side) if side is not None else MISSING_ID

    return PARAM.sub(value, path)


def names_a_resource(path: str) -> bool:
    return any(callable(PATH_PARAMS[name]) for name in PARAM.findall(path))


def expected_status(
    endpoint: Endpoint, method: str, caller: Caller, by_id: bool, target: Side | None
) -> int:
    if caller.scope not in endpoint.access.scopes:
        return 401 if caller.scope is None else 403
    if by_id and (target is None or not endpoint.access.reaches(caller, target)):
        return 404  # out of reach: byte for byte the missing id's answer
    return endpoint.status or {"POST": 201, "DELETE": 204}.get(method, 200)


ERROR_CODES = {401: "UNAUTHENTICATED", 403: "FORBIDDEN", 404: "NOT_FOUND"}


async def send(
    client: httpx.AsyncClient, caller: Caller, method: str, path: str, body: dict | None
) -> list[httpx.Response]:
    """The caller's request; without a key of its own, once with none and once per bad key."""
    responses = []
    for key in [caller.key] if caller.key else [None, *BAD_KEYS]:
        sent = {"X-Principal-ID": caller.principal}
        if key is not None:
            sent["X-API-Key"] = key
        responses.append(await client.request(method, path, json=body, headers=sent))
    return responses


async def test_every_route_for_every_caller_on_both_sides_and_a_missing_id(
    app: FastAPI, client: httpx.AsyncClient, world: World
) -> None:
    failures: list[str] = []
    cells = 0
    # What each renter was shown of their own data: the leak check looks for data that exists.
    shown: dict[str, set[str]] = {side.name: set() for side in world.sides}
    for method, template, endpoint in classified_routes(app):
        by_id = names_a_resource(template)
        for caller in world.callers:
            body = endpoint.body(world, caller) if callable(endpoint.body) else endpoint.body
            # A renter's data is theirs to see, and no one else's.
            renter = caller.side if caller.scope is Scope.marketplace else None
            own_data = renter.renter_data if renter is not None else set()
            if caller.scope in endpoint.access.sees_renters:
                own_data = {data for side in world.sides for data in side.renter_data}
            missing = b""
            # The missing id first: the other side's resource must answer exactly like it.
            for target in [None, *world.sides] if by_id else [None]:
                cells += 1
                path = fill(template, target)
                where = f"{caller.name}: {method} {path}"
                status = expected_status(endpoint, method, caller, by_id, target)
                if endpoint.endless and status < 400:
                    continue
                for response in await send(client, caller, method, path, body):
                    if response.status_code != status or (
                        status in ERROR_CODES
                        and response.json()["error"]["code"] != ERROR_CODES[status]
                    ):
                        failures.append(f"{where}: {status} expected, got {response.text}")
                    text = response.text
                    if caller.scope is Scope.marketplace and endpoint.access is FEED:
                        # A renter's events name the principal its marketplace sent: its own.
                        text = text.replace(caller.principal, "")
                    leaked = [
                        data
                        for side in world.sides
                        for data in side.renter_data - own_data
                        if data in text
                    ]
                    if leaked:
                        failures.append(f"{where}: another's data {leaked} in {response.text}")
                    if renter is not None:
                        shown[renter.name] |= {d for d in own_data if d in text}
                    if by_id and target is None:
                        missing = response.content
                    elif by_id and status == 404 and response.content != missing:
                        failures.append(
                            f"{where}: the other side's resource answers {response.text}, "
                            f"a missing one {missing.decode()}"
                        )
    assert not failures, f"{len(failures)} of {cells} cells:\n" + "\n".join(failures)
    # No body carries a principal but the feed's envelopes: the renter sends it, and it is no
    # one else's to see.
    assert shown == {side.name: side.renter_data - {side.principal} for side in world.sides}
