"""Signed principal assertions through the API: modes, reads and writes, replicas, rotation.

Signed with PyNaCl and python-ecdsa (tests/assertion_signers.py); the server verifies with
`cryptography`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
import time
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as h_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from app.core.db import create_engine
from app.core.settings import Settings
from app.models import IdempotencyRecord, Subscription
from tests.api.test_contract import assert_error, listed_bot
from tests.assertion_signers import (
    Ed25519Signer,
    Secp256k1Signer,
    Signer,
    assertion_headers,
    session_claims,
    write_claims,
)
from tests.helpers import headers, new_principal

REPLICAS = 34
OLD = Ed25519Signer(bytes(range(32)))
NEW = Ed25519Signer(bytes(range(1, 33)))
STRANGER = Ed25519Signer(bytes(32))
ECDSA = Secp256k1Signer(0xC0FFEE)


async def count(settings: Settings, model: type) -> int:
    engine = create_engine(settings.database_url, pool=False)
    async with engine.connect() as connection:
        total = await connection.scalar(select(func.count()).select_from(model))
    await engine.dispose()
    return int(total or 0)


async def marketplace_with(
    client: httpx.AsyncClient, admin_key: str, *signers: Signer, mode: str | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "canister",
        "scope": "marketplace",
        "assertion_keys": [
            {"public_key": s.public_key_b64, "algorithm": s.algorithm} for s in signers
        ],
    }
    if mode is not None:
        body["assertion_mode"] = mode
    created = await client.post("/api/v1/api-keys", json=body, headers=headers(admin_key))
    assert created.status_code == 201, created.text
    return created.json()


class Renter:
    """The canister acting for one principal with one marketplace key."""

    def __init__(self, client: httpx.AsyncClient, key: dict[str, Any], signer: Signer) -> None:
        self.client, self.key, self.signer = client, key, signer
        self.principal = new_principal()

    def read_headers(self, **claims: Any) -> dict[str, str]:
        signed = {**session_claims(self.principal, self.key["prefix"]), **claims}
        return {
            **headers(self.key["key"], self.principal),
            **assertion_headers(self.signer, signed),
        }

    def write_headers(
        self, method: str, path: str, body: bytes, idempotency_key: str | None = None
    ) -> dict[str, str]:
        claims = write_claims(
            self.principal, self.key["prefix"], method, path, body, idempotency_key
        )
        return {
            **headers(self.key["key"], self.principal, idempotency_key),
            **assertion_headers(self.signer, claims),
            "Content-Type": "application/json",
        }

    async def subscribe(self, bot_id: str, idempotency_key: str | None = None) -> httpx.Response:
        """A signed subscription, under a fresh Idempotency-Key unless one is given (required
        mode refuses a signed write without one)."""
        body = subscription_body(bot_id)
        key = idempotency_key or secrets.token_hex(8)
        return await self.client.post(
            "/api/v1/subscriptions",
            content=body,
            headers=self.write_headers("POST", "/api/v1/subscriptions", body, key),
        )


def subscription_body(bot_id: str, quote_amount: str = "25") -> bytes:
    body = {
        "bot_id": bot_id,
        "symbol": "ETHUSDT",
        "timeframe": "5m",
        "mode": "paper",
        "quote_amount": quote_amount,
    }
    return json.dumps(body).encode()


async def test_required_mode_proves_reads_and_writes(
    client: httpx.AsyncClient, admin_key: str, developer_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    assert key["assertion_mode"] == "required"
    renter = Renter(client, key, OLD)
    bot = await listed_bot(client, developer_key)

    created = await renter.subscribe(bot["id"])
    assert created.status_code == 201, created.text
    listed = await client.get("/api/v1/subscriptions", headers=renter.read_headers())
    assert listed.status_code == 200 and len(listed.json()["items"]) == 1

    # The key alone no longer speaks for the renter, neither to read nor to write.
    unsigned = headers(key["key"], renter.principal)
    assert_error(
        await client.get("/api/v1/subscriptions", headers=unsigned),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )
    body = subscription_body(bot["id"])
    refused = await client.post(
        "/api/v1/subscriptions",
        content=body,
        headers={**unsigned, "Content-Type": "application/json"},
    )
    assert_error(refused, 401, "INVALID_PRINCIPAL_ASSERTION")
    # A session assertion is good for reads only: a write must be bound to its request.
    session_signed = await client.post(
        "/api/v1/subscriptions",
        content=body,
        headers={**renter.read_headers(), "Content-Type": "application/json"},
    )
    assert_error(session_signed, 401, "INVALID_PRINCIPAL_ASSERTION")
    assert session_signed.json()["error"]["details"] == [
        {"loc": "header.X-Principal-Assertion", "message": "method"}
    ]
    # Another principal with the first one's assertion.
    stolen = {**renter.read_headers(), "X-Principal-ID": new_principal()}
    assert_error(
        await client.get("/api/v1/subscriptions", headers=stolen),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )
    # A marketplace without assertion keys works as before.
    plain = await client.post(
        "/api/v1/api-keys",
        json={"name": "p", "scope": "marketplace", "marketplace": "plain"},
        headers=headers(admin_key),
    )
    assert plain.json()["assertion_mode"] == "off"
    unsigned_plain = headers(plain.json()["key"], new_principal())
    assert (await client.get("/api/v1/subscriptions", headers=unsigned_plain)).status_code == 200


async def test_optional_mode_accepts_unsigned_and_rejects_badly_signed(
    client: httpx.AsyncClient, admin_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD, mode="optional")
    renter = Renter(client, key, OLD)
    unsigned = headers(key["key"], renter.principal)
    assert (await client.get("/api/v1/subscriptions", headers=unsigned)).status_code == 200
    assert (
        await client.get("/api/v1/subscriptions", headers=renter.read_headers())
    ).status_code == 200
    forged = Renter(client, key, STRANGER)
    forged.principal = renter.principal
    response = await client.get("/api/v1/subscriptions", headers=forged.read_headers())
    assert_error(response, 401, "INVALID_PRINCIPAL_ASSERTION")
    assert response.json()["error"]["details"] == [
        {"loc": "header.X-Principal-Signature", "message": "signature"}
    ]
    half = {**unsigned, "X-Principal-Assertion": renter.read_headers()["X-Principal-Assertion"]}
    assert_error(
        await client.get("/api/v1/subscriptions", headers=half), 401, "INVALID_PRINCIPAL_ASSERTION"
    )


async def test_replicas_of_one_signed_write_make_one_effect_and_identical_bytes(
    client: httpx.AsyncClient, settings: Settings, admin_key: str, developer_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    renter = Renter(client, key, OLD)
    bot = await listed_bot(client, developer_key)
    body = subscription_body(bot["id"])
    outcall = renter.write_headers("POST", "/api/v1/subscriptions", body, "outcall-34")
    responses = await asyncio.gather(
        *(
            client.post("/api/v1/subscriptions", content=body, headers=outcall)
            for _ in range(REPLICAS)
        )
    )
    assert {r.status_code for r in responses} == {201}, responses[0].text
    assert len({r.content for r in responses}) == 1
    assert await count(settings, Subscription) == 1
    assert await count(settings, IdempotencyRecord) == 1

    # The same signed headers with another body or path: 401, not a replay and not a 409.
    other_body = subscription_body(bot["id"], quote_amount="26")
    assert_error(
        await client.post("/api/v1/subscriptions", content=other_body, headers=outcall),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )
    sub_id = responses[0].json()["id"]
    assert_error(
        await client.patch(f"/api/v1/subscriptions/{sub_id}", content=body, headers=outcall),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )
    assert await count(settings, Subscription) == 1


async def test_a_forged_copy_first_neither_runs_nor_spoils_the_genuine_write(
    client: httpx.AsyncClient, settings: Settings, admin_key: str, developer_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    renter = Renter(client, key, OLD)
    bot = await listed_bot(client, developer_key)
    body = subscription_body(bot["id"])
    forged = {
        **renter.write_headers("POST", "/api/v1/subscriptions", body, "k1"),
        "X-Principal-Signature": Renter(client, key, STRANGER).write_headers(
            "POST", "/api/v1/subscriptions", body, "k1"
        )["X-Principal-Signature"],
    }
    first = await client.post("/api/v1/subscriptions", content=body, headers=forged)
    assert_error(first, 401, "INVALID_PRINCIPAL_ASSERTION")
    assert await count(settings, IdempotencyRecord) == 0
    genuine = await renter.subscribe(bot["id"], "k1")
    assert genuine.status_code == 201 and "idempotent-replayed" not in genuine.headers


async def test_rotation_with_two_keys_active(client: httpx.AsyncClient, admin_key: str) -> None:
    key = await marketplace_with(client, admin_key, OLD)
    old_id = key["assertion_keys"][0]["id"]
    old, new = Renter(client, key, OLD), Renter(client, key, NEW)
    assert_error(
        await client.get("/api/v1/subscriptions", headers=new.read_headers()),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )
    added = await client.post(
        f"/api/v1/api-keys/{key['id']}/assertion-keys",
        json={"public_key": NEW.public_key_b64, "algorithm": "ed25519"},
        headers=headers(admin_key),
    )
    assert added.status_code == 201, added.text
    old_read = old.read_headers()  # verified and cached before the old key goes
    for renter in (old, new):
        response = await client.get("/api/v1/subscriptions", headers=renter.read_headers())
        assert response.status_code == 200, response.text
    assert (await client.get("/api/v1/subscriptions", headers=old_read)).status_code == 200

    removed = await client.delete(
        f"/api/v1/api-keys/{key['id']}/assertion-keys/{old_id}", headers=headers(admin_key)
    )
    assert removed.status_code == 204
    assert (
        await client.get("/api/v1/subscriptions", headers=new.read_headers())
    ).status_code == 200
    # Not even a cached verification of the removed key still vouches.
    assert_error(
        await client.get("/api/v1/subscriptions", headers=old_read),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )
    # The last key cannot go while assertions are required.
    listed = (await client.get("/api/v1/api-keys", headers=headers(admin_key))).json()
    shown = next(k for k in listed["items"] if k["id"] == key["id"])
    assert [k["public_key"] for k in shown["assertion_keys"]] == [NEW.public_key_b64]
    last = await client.delete(
        f"/api/v1/api-keys/{key['id']}/assertion-keys/{shown['assertion_keys'][0]['id']}",
        headers=headers(admin_key),
    )
    assert_error(last, 409, "CONFLICT")


async def test_secp256k1_key_as_ic_signs(client: httpx.AsyncClient, admin_key: str) -> None:
    key = await marketplace_with(client, admin_key, ECDSA)
    renter = Renter(client, key, ECDSA)
    assert (
        await client.get("/api/v1/subscriptions", headers=renter.read_headers())
    ).status_code == 200
    wrong = Renter(client, key, Secp256k1Signer(0xBEEF))
    wrong.principal = renter.principal
    assert_error(
        await client.get("/api/v1/subscriptions", headers=wrong.read_headers()),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )


async def test_rollout_from_optional_to_required(client: httpx.AsyncClient, admin_key: str) -> None:
    key = await marketplace_with(client, admin_key, OLD, mode="optional")
    principal = new_principal()
    unsigned = headers(key["key"], principal)
    assert (await client.get("/api/v1/subscriptions", headers=unsigned)).status_code == 200
    changed = await client.patch(
        f"/api/v1/api-keys/{key['id']}",
        json={"assertion_mode": "required"},
        headers=headers(admin_key),
    )
    assert changed.status_code == 200 and changed.json()["assertion_mode"] == "required"
    assert_error(
        await client.get("/api/v1/subscriptions", headers=unsigned),
        401,
        "INVALID_PRINCIPAL_ASSERTION",
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"scope": "developer", "assertion_keys": [{"public_key": OLD.public_key_b64}]}, "body"),
        ({"scope": "marketplace", "assertion_mode": "required"}, "body.assertion_mode"),
        ({"scope": "marketplace", "assertion_keys": [{"public_key": "AAAA"}]}, "body"),
        (
            {
                "scope": "marketplace",
                "assertion_keys": [{"public_key": OLD.public_key_b64, "algorithm": "secp256k1"}],
            },
            "body",
        ),
    ],
)
async def test_assertion_keys_are_checked_at_creation(
    client: httpx.AsyncClient, admin_key: str, body: dict[str, Any], loc: str
) -> None:
    response = await client.post(
        "/api/v1/api-keys", json={"name": "x", **body}, headers=headers(admin_key)
    )
    assert_error(response, 422, "VALIDATION_ERROR")
    assert response.json()["error"]["details"][0]["loc"].startswith(loc)


OFFSETS = st.integers(min_value=1, max_value=10_000)
# Each draws the claims to sign from the right ones: one field different, or a bad time window.
TAMPERINGS: dict[str, Any] = {
    "principal": st.builds(new_principal).map(lambda p: {"principal": p}),
    "api_key_prefix": st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=8, max_size=8).map(
        lambda p: {"api_key_prefix": p}
    ),
    "method": st.sampled_from(["PUT", "PATCH", "DELETE", "post"]).map(lambda m: {"method": m}),
    "path": st.sampled_from(["/api/v1/subscriptions?x=1", "/api/v1/subscriptions/", "/"]).map(
        lambda p: {"path": p}
    ),
    "body_sha256": st.binary(max_size=8).map(
        lambda b: {"body_sha256": hashlib.sha256(b).hexdigest()}
    ),
    "idempotency_key": st.text(min_size=1, max_size=10).map(lambda t: {"idempotency_key": t}),
    "future": OFFSETS.map(lambda d: {"iat": int(time.time()) + 60 + d}),
    "expired": OFFSETS.map(lambda d: {"iat": int(time.time()) - 660 - d, "exp": None}),
    "too long": OFFSETS.map(lambda d: {"exp_after_iat": 900 + d}),
    "exp before iat": st.integers(min_value=-10_000, max_value=0).map(
        lambda d: {"exp_after_iat": d}
    ),
}


@h_settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(how=st.sampled_from(sorted(TAMPERINGS)), data=st.data())
async def test_a_write_signed_for_anything_else_is_401_and_changes_nothing(
    client: httpx.AsyncClient,
    settings: Settings,
    admin_key: str,
    how: str,
    data: st.DataObject,
) -> None:
    """The canister signed one field differently from the request that arrives, or a time
    window that is over, not yet open or too long: 401 and no subscription."""
    key = await marketplace_with(client, admin_key, OLD)
    renter = Renter(client, key, OLD)
    body = subscription_body("0" * 32)
    path = "/api/v1/subscriptions"
    claims = write_claims(renter.principal, key["prefix"], "POST", path, body, "k")
    changes = data.draw(TAMPERINGS[how])
    if "exp_after_iat" in changes:
        changes = {"exp": claims["iat"] + changes.pop("exp_after_iat")}
    elif changes.get("exp", 0) is None:
        changes["exp"] = changes["iat"] + 600
    assume(any(claims.get(k) != v for k, v in changes.items()))
    request_headers = {
        **headers(key["key"], renter.principal, "k"),
        **assertion_headers(OLD, {**claims, **changes}),
        "Content-Type": "application/json",
    }
    before = await count(settings, Subscription)
    response = await client.post(path, content=body, headers=request_headers)
    # Had the assertion passed, the unknown bot would have made it a 404.
    assert_error(response, 401, "INVALID_PRINCIPAL_ASSERTION")
    assert await count(settings, Subscription) == before


async def test_a_removed_key_stops_vouching_in_another_process_within_5_seconds(
    client: httpx.AsyncClient, second_process: httpx.AsyncClient, admin_key: str
) -> None:
    key = await marketplace_with(client, admin_key, OLD, NEW)
    old_id = key["assertion_keys"][0]["id"]
    old_read = Renter(client, key, OLD).read_headers()
    # The other process has the key and the verified assertion cached.
    assert (await second_process.get("/api/v1/subscriptions", headers=old_read)).status_code == 200
    removed_at = time.monotonic()
    removed = await client.delete(
        f"/api/v1/api-keys/{key['id']}/assertion-keys/{old_id}", headers=headers(admin_key)
    )
    assert removed.status_code == 204
    while (await second_process.get("/api/v1/subscriptions", headers=old_read)).status_code != 401:
        assert time.monotonic() - removed_at < 5.5, "the removal did not arrive within 5 s"
        await asyncio.sleep(0.1)
