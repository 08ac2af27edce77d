"""Delivering webhooks to a real receiver: what the owner's feed shows, signed so that
standardwebhooks verifies it, retried until the receiver is back, given up and the endpoint
disabled, replayed, taken over from a dead worker, refused at internal addresses in
production, and erased with the renter's events."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from app.api_keys.schemas import Scope
from app.core.db import new_id, session_scope, utcnow
from app.core.settings import Environment, Settings
from app.events import feed
from app.events.types import EventType
from app.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.webhooks import repository
from tests.api.test_contract import create_bot
from tests.conftest import make_key
from tests.events.seeding import write_renter_events
from tests.helpers import headers, new_principal
from tests.webhooks.conftest import (
    URL,
    Harness,
    HarnessFor,
    Receiver,
    register,
    seed_bot_event,
    webhook_settings,
)


async def feed_items(client: httpx.AsyncClient, key: str) -> list[dict]:
    response = await client.get("/api/v1/events", params={"limit": 200}, headers=headers(key))
    assert response.status_code == 200, response.text
    items: list[dict] = response.json()["items"]
    return items


async def test_each_endpoint_gets_what_its_owner_reads_in_the_feed_signed(
    client: httpx.AsyncClient,
    marketplace_key: str,
    developer_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
    other_receiver: Receiver,
) -> None:
    market = await register(client, marketplace_key, receiver.url)
    developer = await register(client, developer_key, other_receiver.url)
    bot = (await create_bot(client, developer_key))["id"]
    renters = await write_renter_events(sessionmaker, new_principal(), 3, numbered=True)
    decision = await seed_bot_event(sessionmaker, bot, EventType.decision_made)
    await seed_bot_event(sessionmaker, new_id(), EventType.decision_made)  # another's bot

    assert await harness.dispatch() == 4
    assert sorted(receiver.ids()) == sorted(renters)
    assert other_receiver.ids() == [decision]
    for hook, got, key in (
        (market, receiver, marketplace_key),
        (developer, other_receiver, developer_key),
    ):
        in_feed = {item["id"]: item for item in await feed_items(client, key)}
        for request in got.requests:
            envelope = Webhook(hook["secret"]).verify(request.body, request.headers)
            assert envelope == in_feed[request.headers["webhook-id"]]
            # The feed's bytes: compact JSON of the same envelope.
            assert (
                request.body
                == json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode()
            )
    # A developer's endpoint never learns the renter.
    assert json.loads(other_receiver.requests[0].body)["principal"] is None
    # Dispatched once: nothing new, nothing sent again.
    assert await harness.dispatch() == 0 and len(receiver.requests) == 3


async def test_after_a_rotation_both_secrets_sign(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
) -> None:
    hook = await register(client, marketplace_key, receiver.url)
    rotated = await client.post(
        f"{URL}/{hook['id']}/rotate-secret", headers=headers(marketplace_key)
    )
    new_secret = rotated.json()["secret"]
    await write_renter_events(sessionmaker, new_principal(), 1, numbered=True)
    assert await harness.dispatch() == 1
    request = receiver.requests[0]
    signatures = request.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    for secret, signature in zip((new_secret, hook["secret"]), signatures, strict=True):
        Webhook(secret).verify(request.body, {**request.headers, "webhook-signature": signature})


async def test_a_receiver_down_for_a_while_gets_every_event_once_back(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
) -> None:
    hook = await register(client, marketplace_key, receiver.url)
    receiver.status = 503
    events = await write_renter_events(sessionmaker, new_principal(), 5, numbered=True)
    assert await harness.dispatch() == 0
    assert await harness.retry_after(0.5) == 0  # not due yet: nothing sent
    assert len(receiver.requests) == 5
    assert await harness.retry_after(0.5) == 0  # 1 s after the first: the second attempt
    assert len(receiver.requests) == 10
    receiver.status = 200
    assert await harness.retry_after(2) == 5
    assert sorted(receiver.ids()) == sorted(events)
    assert sorted(receiver.ids(503)) == sorted(events * 2)

    deliveries = await client.get(
        f"{URL}/{hook['id']}/deliveries", headers=headers(marketplace_key)
    )
    items = deliveries.json()["items"]
    assert sorted(item["event_id"] for item in items) == sorted(events)
    for item in items:
        assert item["status"] == "delivered" and item["next_attempt_at"] is None
        assert [a["status_code"] for a in item["attempts"]] == [503, 503, 200]
        assert [a["error"] for a in item["attempts"]] == ["answered 503"] * 2 + [None]


async def test_one_job_of_sends_that_succeed_and_fail_records_each(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
    other_receiver: Receiver,
) -> None:
    down = await register(client, marketplace_key, receiver.url)
    up = await register(client, marketplace_key, other_receiver.url)
    receiver.status = 500
    events = await write_renter_events(sessionmaker, new_principal(), 3, numbered=True)
    await harness.flows.dispatch()
    assert len(harness.jobs) == 1  # all six deliveries in one job, recorded together
    assert await harness.run_jobs() == 3

    async def deliveries(hook: dict) -> list[dict]:
        page = await client.get(f"{URL}/{hook['id']}/deliveries", headers=headers(marketplace_key))
        items: list[dict] = page.json()["items"]
        assert sorted(item["event_id"] for item in items) == sorted(events)
        return items

    for item in await deliveries(up):
        assert item["status"] == "delivered" and item["next_attempt_at"] is None
        assert [(a["status_code"], a["error"]) for a in item["attempts"]] == [(200, None)]
    for item in await deliveries(down):
        assert item["status"] == "pending" and item["next_attempt_at"] is not None
        assert [(a["status_code"], a["error"]) for a in item["attempts"]] == [(500, "answered 500")]
    async with sessionmaker() as session:
        rows = await session.execute(select(WebhookEndpoint.id, WebhookEndpoint.failing_since))
        failing = {endpoint_id: since for endpoint_id, since in rows}
    assert failing[up["id"]] is None and failing[down["id"]] is not None
    # Back up: the retries are delivered, and the endpoint answers again.
    receiver.status = 200
    assert await harness.retry_after(1) == 3
    assert sorted(receiver.ids()) == sorted(events)
    async with sessionmaker() as session:
        assert (
            await session.scalar(
                select(WebhookEndpoint.failing_since).where(WebhookEndpoint.id == down["id"])
            )
            is None
        )


async def test_a_refused_connection_is_retried(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
) -> None:
    # A port nothing listens on: the receiver's, once it is gone.
    hook = await register(client, marketplace_key, "http://127.0.0.1:9/hook")
    await write_renter_events(sessionmaker, new_principal(), 1, numbered=True)
    assert await harness.dispatch() == 0
    page = await client.get(f"{URL}/{hook['id']}/deliveries", headers=headers(marketplace_key))
    [delivery] = page.json()["items"]
    [attempt] = delivery["attempts"]
    assert delivery["status"] == "pending" and delivery["next_attempt_at"] is not None
    assert attempt["status_code"] is None and "ConnectError" in attempt["error"]
    await client.patch(
        f"{URL}/{hook['id']}", json={"url": receiver.url}, headers=headers(marketplace_key)
    )
    assert await harness.retry_after(1) == 1


async def test_a_delivery_fails_after_its_schedule_and_the_endpoint_is_disabled(
    client: httpx.AsyncClient,
    settings: Settings,
    developer_key: str,
    marketplace_key: str,
    admin_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    receiver: Receiver,
    harness_for: HarnessFor,
) -> None:
    harness = harness_for(
        webhook_settings(
            settings, webhook_retry_schedule_s=[1.0, 1.0], webhook_disable_after_hours=2.5 / 3600
        )
    )
    hook = await register(client, developer_key, receiver.url)
    bot = (await create_bot(client, developer_key))["id"]
    receiver.status = 500
    await seed_bot_event(sessionmaker, bot, EventType.decision_made)
    await harness.dispatch()
    await harness.retry_after(1)
    await harness.retry_after(1)  # the third attempt: the schedule is spent
    assert await harness.retry_after(10) == 0 and len(receiver.requests) == 3
    page = await client.get(f"{URL}/{hook['id']}/deliveries", headers=headers(developer_key))
    [failed] = page.json()["items"]
    assert failed["status"] == "failed" and failed["next_attempt_at"] is None
    assert len(failed["attempts"]) == 3
    # Failing since the first attempt, 12 s ago: the next failure disables it.
    await seed_bot_event(sessionmaker, bot, EventType.decision_made)
    await harness.dispatch()
    endpoint = (await client.get(f"{URL}/{hook['id']}", headers=headers(developer_key))).json()
    assert endpoint["enabled"] is False and endpoint["disabled_at"] is not None

    def disabled(items: list[dict]) -> list[dict]:
        return [item for item in items if item["type"] == "webhook.disabled"]

    [told] = disabled(await feed_items(client, developer_key))
    assert told["data"]["webhook_id"] == hook["id"] and told["principal"] is None
    assert disabled(await feed_items(client, admin_key)) == [told]
    assert disabled(await feed_items(client, marketplace_key)) == []
    other_developer = await make_key(settings, Scope.developer, "other developer")
    assert disabled(await feed_items(client, other_developer)) == []
    # Disabled, it is sent nothing, until enabled again.
    receiver.status = 200
    assert await harness.retry_after(10) == 0
    await client.patch(
        f"{URL}/{hook['id']}", json={"enabled": True}, headers=headers(developer_key)
    )
    assert await harness.retry_after(0) == 1


async def test_revoking_a_leaked_key_stops_the_endpoints_it_registered(
    client: httpx.AsyncClient,
    settings: Settings,
    marketplace_key: str,
    admin_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
    other_receiver: Receiver,
) -> None:
    """A thief with a marketplace's key registered their own receiver; the key revoked, it
    went on getting every renter's events. Its endpoints stop with it, and the owner hears."""
    leaked = await make_key(settings, Scope.marketplace, "leaked")
    stolen = await register(client, leaked, other_receiver.url)
    kept = await register(client, marketplace_key, receiver.url)
    key_id = next(
        item["id"]
        for item in (await client.get("/api/v1/api-keys", headers=headers(admin_key))).json()[
            "items"
        ]
        if item["name"] == "leaked"
    )
    revoked = await client.delete(f"/api/v1/api-keys/{key_id}", headers=headers(admin_key))
    assert revoked.status_code == 204
    await write_renter_events(sessionmaker, new_principal(), 2, numbered=True)
    await harness.dispatch()
    assert other_receiver.requests == []
    # The two renter events, and the notice that the thief's endpoint stopped.
    got = sorted(json.loads(r.body)["type"] for r in receiver.requests)
    assert got == ["trade.filled", "trade.filled", "webhook.disabled"]
    endpoint = (await client.get(f"{URL}/{stolen['id']}", headers=headers(marketplace_key))).json()
    assert endpoint["enabled"] is False and "revoked" in endpoint["disabled_reason"]
    told = [i for i in await feed_items(client, marketplace_key) if i["type"] == "webhook.disabled"]
    assert [i["data"]["webhook_id"] for i in told] == [stolen["id"]]
    # The owner may take it back with a live key of theirs: it then answers to that key.
    enabled = await client.patch(
        f"{URL}/{stolen['id']}", json={"enabled": True}, headers=headers(marketplace_key)
    )
    assert enabled.status_code == 200 and enabled.json()["enabled"] is True
    assert kept["enabled"] is True


async def test_replay_sends_every_matching_event_again(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
) -> None:
    hook = await register(client, marketplace_key, receiver.url, types=["trade.filled"])
    principal = new_principal()
    first = await write_renter_events(sessionmaker, principal, 2, numbered=True)
    # Not a type it takes.
    await write_renter_events(sessionmaker, principal, 1, EventType.risk_paused, numbered=True)
    cursor = (await client.get("/api/v1/events", headers=headers(marketplace_key))).json()
    later = await write_renter_events(sessionmaker, principal, 2, numbered=True)
    assert await harness.dispatch() == 4

    path = f"{URL}/{hook['id']}/replay"
    everything = await client.post(
        path, json={"after": feed.encode_seq(0)}, headers=headers(marketplace_key)
    )
    assert everything.status_code == 202 and everything.json()["deliveries"] == 4
    since = await client.post(
        path, json={"after": cursor["next_cursor"]}, headers=headers(marketplace_key)
    )
    assert since.json()["deliveries"] == 2
    # The API sent their jobs to its broker; the sweep finds them as well, due at the time
    # the API made them.
    harness.clock.now = utcnow()
    assert await harness.retry_after(0) == 6
    assert sorted(receiver.ids()) == sorted(first * 2 + later * 3)
    bad = await client.post(path, json={"after": "nope"}, headers=headers(marketplace_key))
    assert bad.status_code == 422
    assert bad.json()["error"]["details"][0]["loc"] == "body.after"


async def test_a_delivery_whose_worker_died_is_sent_once_its_lease_runs_out(
    client: httpx.AsyncClient,
    marketplace_key: str,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
) -> None:
    await register(client, marketplace_key, receiver.url)
    [event] = await write_renter_events(sessionmaker, new_principal(), 1, numbered=True)
    await harness.flows.dispatch()
    [job] = harness.jobs
    # A worker claims the delivery, then dies before sending it.
    now = harness.clock()
    async with session_scope(sessionmaker) as session:
        claimed = await repository.claim(
            session, job["delivery_ids"], new_id(), now, now + timedelta(seconds=60)
        )
    assert len(claimed) == 1
    assert await harness.run_jobs() == 0  # its job, run again meanwhile: claimed, skipped
    assert await harness.retry_after(30) == 0 and receiver.requests == []
    assert await harness.retry_after(31) == 1
    assert receiver.ids() == [event]


async def test_production_refuses_an_internal_address_at_delivery(
    client: httpx.AsyncClient,
    marketplace_key: str,
    settings: Settings,
    sessionmaker: async_sessionmaker[AsyncSession],
    receiver: Receiver,
    harness_for: HarnessFor,
) -> None:
    """Registered while allowed (here: in development; in production, a name that resolved
    to a public address then), refused at the address it resolves to when delivering."""
    port = receiver.url.split(":")[2].split("/")[0]
    hooks = [
        await register(client, marketplace_key, f"https://localhost:{port}/hook"),
        await register(client, marketplace_key, receiver.url),
    ]
    production = harness_for(
        webhook_settings(settings).model_copy(update={"environment": Environment.production})
    )
    await write_renter_events(sessionmaker, new_principal(), 1, numbered=True)
    assert await production.dispatch() == 0
    assert receiver.requests == []
    for hook, why in zip(hooks, ("not public", "https only"), strict=True):
        page = await client.get(f"{URL}/{hook['id']}/deliveries", headers=headers(marketplace_key))
        [attempt] = page.json()["items"][0]["attempts"]
        assert attempt["status_code"] is None and why in attempt["error"]


async def test_erasure_takes_the_renters_pending_deliveries(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
) -> None:
    await register(client, marketplace_key, receiver.url)
    receiver.status = 503
    principal, other = new_principal(), new_principal()
    await write_renter_events(sessionmaker, principal, 2, numbered=True)
    kept = await write_renter_events(sessionmaker, other, 1, numbered=True)
    await harness.dispatch()

    async def count(model: type[WebhookDelivery] | type[WebhookAttempt]) -> int:
        async with sessionmaker() as session:
            return int(await session.scalar(select(func.count()).select_from(model)) or 0)

    assert (await count(WebhookDelivery), await count(WebhookAttempt)) == (3, 3)
    erased = await client.delete(
        "/api/v1/principals/me", headers=headers(marketplace_key, principal)
    )
    assert erased.status_code == 204
    assert (await count(WebhookDelivery), await count(WebhookAttempt)) == (1, 1)
    receiver.status = 200
    assert await harness.retry_after(1) == 1 and receiver.ids() == kept


async def test_a_slow_endpoint_holds_up_no_other(
    client: httpx.AsyncClient,
    marketplace_key: str,
    sessionmaker: async_sessionmaker[AsyncSession],
    harness: Harness,
    receiver: Receiver,
    other_receiver: Receiver,
) -> None:
    slow = await register(client, marketplace_key, receiver.url)
    fast = await register(client, marketplace_key, other_receiver.url)
    receiver.hold = threading.Event()
    await write_renter_events(sessionmaker, new_principal(), 1, numbered=True)
    await harness.flows.dispatch()
    delivering = asyncio.create_task(harness.run_jobs())

    async def status(hook: dict) -> str:
        page = await client.get(f"{URL}/{hook['id']}/deliveries", headers=headers(marketplace_key))
        return str(page.json()["items"][0]["status"])

    # The fast endpoint's delivery is made and recorded while the slow one still waits.
    while await status(fast) != "delivered":
        assert not delivering.done()
        await asyncio.sleep(0.02)
    assert await status(slow) == "pending"
    receiver.hold.set()
    assert await delivering == 2
