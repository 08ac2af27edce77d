"""Tenancy: a marketplace key acts only for its own renters.

The same principal in two marketplaces is two renters whose data never meet; a bot is rented
only where it is listed; assertion keys and mode belong to the marketplace, so a second key of
it needs no registration of its own. (Every route for both marketplaces' keys on both sides is
tests/api/test_authorisation_matrix.py's.)
"""

from __future__ import annotations

import httpx
import pytest

from app.api_keys.schemas import Scope
from app.core.settings import Settings
from tests.api.test_contract import assert_error, create_bot, subscribe
from tests.assertion_signers import Ed25519Signer, assertion_headers, session_claims
from tests.backtests.conftest import list_bot
from tests.conftest import make_key
from tests.helpers import headers, new_principal


@pytest.fixture
async def markets(settings: Settings) -> tuple[str, str]:
    """Keys of two marketplaces, `market-a` and `market-b`."""
    return (
        await make_key(settings, Scope.marketplace, "a", "market-a"),
        await make_key(settings, Scope.marketplace, "b", "market-b"),
    )


@pytest.fixture
async def bot_on_both(
    client: httpx.AsyncClient, developer_key: str, markets: tuple[str, str]
) -> dict:
    bot = await create_bot(client, developer_key)
    await list_bot(client, developer_key, bot, "market-a")
    await list_bot(client, developer_key, bot, "market-b")
    return bot


async def test_one_principal_in_two_marketplaces_is_two_renters(
    client: httpx.AsyncClient, markets: tuple[str, str], bot_on_both: dict
) -> None:
    key_a, key_b = markets
    principal = new_principal()
    in_a = await subscribe(client, key_a, principal, bot_on_both["id"])
    assert in_a.status_code == 201, in_a.text
    sub_id = in_a.json()["id"]
    # Marketplace B's renter of that principal has nothing, and cannot reach A's.
    listed = await client.get("/api/v1/subscriptions", headers=headers(key_b, principal))
    assert listed.json()["items"] == []
    for method in ("GET", "PATCH"):
        reached = await client.request(
            method,
            f"/api/v1/subscriptions/{sub_id}",
            json={"status": "paused"} if method == "PATCH" else None,
            headers=headers(key_b, principal),
        )
        assert_error(reached, 404, "NOT_FOUND")
    # Erasing B's renter leaves A's untouched.
    erased = await client.delete("/api/v1/principals/me", headers=headers(key_b, principal))
    assert erased.status_code == 204
    still = await client.get(f"/api/v1/subscriptions/{sub_id}", headers=headers(key_a, principal))
    assert still.status_code == 200 and still.json()["status"] == "active"


async def test_the_feed_of_a_marketplace_holds_its_own_renters_only(
    client: httpx.AsyncClient, markets: tuple[str, str], bot_on_both: dict
) -> None:
    key_a, key_b = markets
    principal = new_principal()
    created = await subscribe(client, key_a, principal, bot_on_both["id"])
    assert created.status_code == 201, created.text
    feeds = [
        (await client.get("/api/v1/events", headers=sent)).json()["items"]
        for sent in (headers(key_a), headers(key_b), headers(key_b, principal))
    ]
    assert [event["subscription_id"] for event in feeds[0]] == [created.json()["id"]]
    assert feeds[1] == [] and feeds[2] == []


async def test_a_bot_is_rented_only_where_it_is_listed(
    client: httpx.AsyncClient, developer_key: str, markets: tuple[str, str]
) -> None:
    key_a, key_b = markets
    bot = await create_bot(client, developer_key)
    await list_bot(client, developer_key, bot, "market-a")
    refused = await subscribe(client, key_b, new_principal(), bot["id"])
    assert_error(refused, 404, "NOT_FOUND")
    listings = {
        name: (await client.get("/api/v1/registrations", headers=headers(key))).json()["items"]
        for name, key in (("a", key_a), ("b", key_b), ("developer", developer_key))
    }
    assert [(r["bot_id"], r["marketplace"]) for r in listings["a"]] == [(bot["id"], "market-a")]
    assert listings["b"] == []
    assert listings["developer"] == listings["a"]
    # Listed on B as well, B's renters may rent it too.
    await list_bot(client, developer_key, bot, "market-b")
    assert (await subscribe(client, key_b, new_principal(), bot["id"])).status_code == 201


async def test_a_listing_names_a_marketplace_by_its_rule(
    client: httpx.AsyncClient, developer_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    refused = await client.post(
        f"/api/v1/bots/{bot['id']}/registrations",
        json={"price": "1", "marketplace": "Market A"},
        headers=headers(developer_key),
    )
    assert_error(refused, 422, "VALIDATION_ERROR")
    assert refused.json()["error"]["details"][0]["loc"] == "body.marketplace"


async def test_assertion_rules_are_the_marketplaces_for_every_key_of_it(
    client: httpx.AsyncClient, admin_key: str, markets: tuple[str, str], bot_on_both: dict
) -> None:
    key_a, key_b = markets
    signer = Ed25519Signer(b"\x07" * 32)
    first = await client.post(
        "/api/v1/api-keys",
        json={
            "name": "canister",
            "scope": "marketplace",
            "marketplace": "market-a",
            "assertion_keys": [{"public_key": signer.public_key_b64}],
        },
        headers=headers(admin_key),
    )
    assert first.status_code == 201, first.text
    assert first.json()["assertion_mode"] == "required"
    # A second key of market-a: no assertion key of its own, the marketplace's rules hold.
    second = await client.post(
        "/api/v1/api-keys",
        json={"name": "canister-2", "scope": "marketplace", "marketplace": "market-a"},
        headers=headers(admin_key),
    )
    assert second.json()["marketplace"] == "market-a"
    assert second.json()["assertion_keys"] == first.json()["assertion_keys"]
    principal = new_principal()
    for key in (key_a, second.json()["key"]):
        unsigned = await client.get("/api/v1/subscriptions", headers=headers(key, principal))
        assert_error(unsigned, 401, "INVALID_PRINCIPAL_ASSERTION")
    prefix = second.json()["prefix"]
    signed = await client.get(
        "/api/v1/subscriptions",
        headers={
            **headers(second.json()["key"], principal),
            **assertion_headers(signer, session_claims(principal, prefix)),
        },
    )
    assert signed.status_code == 200, signed.text
    # Marketplace B's mode is its own, still off.
    assert (await client.get("/api/v1/subscriptions", headers=headers(key_b, principal))).is_success


async def test_an_admin_lists_and_creates_marketplaces(
    client: httpx.AsyncClient, admin_key: str, markets: tuple[str, str]
) -> None:
    made = await client.post(
        "/api/v1/marketplaces", json={"name": "market-c"}, headers=headers(admin_key)
    )
    assert made.status_code == 201 and made.json()["assertion_mode"] == "off"
    again = await client.post(
        "/api/v1/marketplaces", json={"name": "market-c"}, headers=headers(admin_key)
    )
    assert_error(again, 409, "CONFLICT")
    listed = await client.get("/api/v1/marketplaces", headers=headers(admin_key))
    names = [m["name"] for m in listed.json()["items"]]
    assert names == ["market-a", "market-b", "market-c"]
