"""The second security round's findings on signed principal assertions, each reproduced as an
attacker with the leaked marketplace key (or a developer key) would try it."""

from __future__ import annotations

import base64
import secrets

import httpx
import pytest
from cryptography.exceptions import InvalidSignature
from nacl.bindings import crypto_core_ed25519_is_valid_point

from app.core.principal_assertions import Algorithm, load_public_key
from app.core.principals import encode_principal
from app.core.settings import Settings
from app.models import IdempotencyRecord, Subscription
from tests.api.test_contract import assert_error, create_bot, listed_bot
from tests.api.test_principal_assertions import (
    OLD,
    Renter,
    count,
    marketplace_with,
    subscription_body,
)
from tests.assertion_signers import b64url
from tests.helpers import headers, new_principal

PATH = "/api/v1/subscriptions"


@pytest.mark.parametrize("mode", ["required", "optional"])
async def test_a_copy_without_a_principal_does_not_hold_the_idempotency_key(
    client: httpx.AsyncClient, settings: Settings, admin_key: str, developer_key: str, mode: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD, mode=mode)
    renter = Renter(client, key, OLD)
    bot = await listed_bot(client, developer_key)
    body = subscription_body(bot["id"])
    # The leaked key alone, no X-Principal-ID: refused, and the key stays free.
    poison = await client.post(
        PATH,
        content=body,
        headers={**headers(key["key"], None, "k1"), "Content-Type": "application/json"},
    )
    assert_error(poison, 422, "VALIDATION_ERROR")
    assert await count(settings, IdempotencyRecord) == 0
    genuine = await renter.subscribe(bot["id"], "k1")
    assert genuine.status_code == 201, genuine.text
    assert "idempotent-replayed" not in genuine.headers


async def test_an_assertion_nested_deeply_is_401_and_a_body_nested_deeply_is_422(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    renter = Renter(client, key, OLD)
    nested = {
        **renter.read_headers(),
        "X-Principal-Assertion": b64url(b"[" * 1500),
        "X-Principal-Signature": b64url(bytes(64)),
    }
    response = await client.get(PATH, headers=nested)
    assert_error(response, 401, "INVALID_PRINCIPAL_ASSERTION")
    assert response.json()["error"]["details"] == [
        {"loc": "header.X-Principal-Assertion", "message": "assertion"}
    ]
    plain = await client.post(
        "/api/v1/api-keys", json={"name": "p", "scope": "marketplace"}, headers=headers(admin_key)
    )
    deep = await client.post(
        PATH,
        content=b"[" * 20_000,
        headers={
            **headers(plain.json()["key"], new_principal()),
            "Content-Type": "application/json",
        },
    )
    assert_error(deep, 422, "VALIDATION_ERROR")


async def test_a_signed_write_without_an_idempotency_key_is_refused_when_required(
    client: httpx.AsyncClient, settings: Settings, admin_key: str, developer_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    renter = Renter(client, key, OLD)
    bot = await listed_bot(client, developer_key)
    before = await count(settings, Subscription)
    body = subscription_body(bot["id"])
    unkeyed = renter.write_headers("POST", PATH, body)
    captured = await client.post(PATH, content=body, headers=unkeyed)
    assert_error(captured, 401, "INVALID_PRINCIPAL_ASSERTION")
    assert captured.json()["error"]["details"] == [
        {"loc": "header.Idempotency-Key", "message": "missing"}
    ]
    assert await count(settings, Subscription) == before
    # Optional mode is the rollout: a signed write without the key still runs there.
    optional = Renter(client, await marketplace_with(client, admin_key, OLD, mode="optional"), OLD)
    unkeyed = optional.write_headers("POST", PATH, body)
    assert (await client.post(PATH, content=body, headers=unkeyed)).status_code == 201


_P = 2**255 - 19
# The eight Ed25519 points of small order as libsodium lists them, by y-coordinate (the order-8
# ones' y, and its negation): the identity, order 2, order 4 and order 8.
_ORDER_8_Y = int.from_bytes(
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"), "little"
)
SMALL_ORDER_ENCODINGS = sorted(
    {
        (y + (sign << 255)).to_bytes(32, "little")
        for base in (1, _P - 1, 0, _ORDER_8_Y, _P - _ORDER_8_Y)
        # Non-canonical too: y + p where it fits in 255 bits, and the sign bit set with x = 0.
        for y in (base, base + _P)
        if y < 2**255
        for sign in (0, 1)
    }
)


@pytest.mark.parametrize("raw", SMALL_ORDER_ENCODINGS, ids=lambda raw: raw.hex()[:8])
async def test_a_small_order_ed25519_key_is_refused_at_registration(
    client: httpx.AsyncClient, admin_key: str, raw: bytes
) -> None:
    # libsodium agrees these are no public keys: with one, identity||0 would verify anything.
    assert not crypto_core_ed25519_is_valid_point(raw)
    key = await marketplace_with(client, admin_key, OLD)
    public_key = base64.b64encode(raw).decode()
    for response in (
        await client.post(
            f"/api/v1/api-keys/{key['id']}/assertion-keys",
            json={"public_key": public_key, "algorithm": "ed25519"},
            headers=headers(admin_key),
        ),
        await client.post(
            "/api/v1/api-keys",
            json={
                "name": "small",
                "scope": "marketplace",
                "assertion_keys": [{"public_key": public_key}],
            },
            headers=headers(admin_key),
        ),
    ):
        assert_error(response, 422, "VALIDATION_ERROR")
        assert "public_key" in response.json()["error"]["details"][0]["message"]


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def other_spellings(encoded: str) -> list[str]:
    """Every string a lenient decoder reads as the same bytes: with padding, or with the unused
    low bits of the last character set."""
    index = _ALPHABET.index(encoded[-1])
    unused = {2: 4, 3: 2}.get(len(encoded) % 4, 0)  # 6 bits per char, 8 per byte
    variants = [encoded[:-1] + _ALPHABET[index | low] for low in range(1, 1 << unused)]
    padding = "=" * (-len(encoded) % 4)
    return [*variants, encoded + padding] if padding else variants


@pytest.mark.parametrize("header", ["X-Principal-Assertion", "X-Principal-Signature"])
async def test_only_the_exact_unpadded_base64url_is_accepted(
    client: httpx.AsyncClient, admin_key: str, header: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    renter = Renter(client, key, OLD)
    # A principal of the length that leaves the assertion's encoding a partial last group.
    for size in range(4, 30):
        renter.principal = encode_principal(secrets.token_bytes(size))
        signed = renter.read_headers()
        if len(signed["X-Principal-Assertion"]) % 4:
            break
    assert (await client.get(PATH, headers=signed)).status_code == 200
    spellings = other_spellings(signed[header])
    assert spellings
    for spelling in spellings:
        response = await client.get(PATH, headers={**signed, header: spelling})
        assert_error(response, 401, "INVALID_PRINCIPAL_ASSERTION")


async def test_a_renter_subscribes_only_to_a_listed_bot(
    client: httpx.AsyncClient, developer_key: str, marketplace_key: str
) -> None:
    bot = await create_bot(client, developer_key)
    renter = {**headers(marketplace_key, new_principal()), "Content-Type": "application/json"}
    body = subscription_body(bot["id"])
    # As for a renter's backtest: an unlisted bot is not there for a renter.
    assert_error(await client.post(PATH, content=body, headers=renter), 404, "NOT_FOUND")
    listed = await client.post(
        f"/api/v1/bots/{bot['id']}/registrations",
        json={"price": "1"},
        headers=headers(developer_key),
    )
    assert listed.status_code == 201, listed.text
    assert (await client.post(PATH, content=body, headers=renter)).status_code == 201


@pytest.mark.parametrize("raw", SMALL_ORDER_ENCODINGS, ids=lambda raw: raw.hex()[:8])
def test_a_small_order_key_stored_before_the_refusal_verifies_nothing(raw: bytes) -> None:
    # A key registered before registration refused it is still loaded from the database: it
    # must refuse the forgery identity||0 instead of vouching for any assertion.
    identity = (1).to_bytes(32, "little")
    forged = identity + bytes(32)
    verifier = load_public_key("stored", Algorithm.ed25519, raw)
    with pytest.raises(InvalidSignature):
        verifier.verify(forged, b"botmarket-principal-assertion-v1\n{}")


async def test_a_key_whose_renters_must_sign_cannot_read_every_renters_events_unsigned(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    # A leaked copy of the key alone must not read the events of every renter at once; one
    # renter's events, with that renter's assertion, still are served.
    signed = await marketplace_with(client, admin_key, OLD)
    refused = await client.get("/api/v1/events", headers=headers(signed["key"]))
    assert_error(refused, 401, "INVALID_PRINCIPAL_ASSERTION")
    renter = Renter(client, signed, OLD)
    one = await client.get("/api/v1/events", headers=renter.read_headers())
    assert one.status_code == 200, one.text
    unsigned = await marketplace_with(client, admin_key, mode="off")
    every = await client.get("/api/v1/events", headers=headers(unsigned["key"]))
    assert every.status_code == 200, every.text
