"""Webhook endpoints and the deliveries owed to them: what the API's routes and the delivery
flows change. Secrets are Fernet-encrypted at rest and decrypted only to sign a delivery."""

from __future__ import annotations

import base64
import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement
from sqlalchemy.ext.asyncio import AsyncSession
from standardwebhooks import Webhook

from app.api_keys.authenticator import Caller
from app.api_keys.schemas import Scope
from app.core.crypto import Keyring
from app.core.db import new_id
from app.core.errors import NotFound, Unprocessable
from app.core.settings import Settings
from app.events import feed
from app.events import repository as events
from app.events.service import record
from app.events.types import EventType
from app.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from app.models.webhooks import DISPATCHED
from app.webhooks import repository
from app.webhooks.repository import FAILED, PENDING
from app.webhooks.schemas import WebhookCreate, WebhookUpdate
from app.webhooks.targets import TargetPolicy, TargetRefused

SECRET_PREFIX = "whsec_"  # noqa: S105 - the standard's public marker, not a secret
# Standard Webhooks asks for 24 to 64 random bytes.
SECRET_BYTES = 32
# Events one dispatch transaction matches, and the most one replay queues.
DISPATCH_BATCH = 1000
REPLAY_LIMIT = 10_000


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def owner_of(caller: Caller) -> ColumnElement[bool] | None:
    return repository.owned_by(caller.scope, caller.owner_user_id, caller.marketplace_id)


def viewer_of(endpoint: WebhookEndpoint) -> feed.Viewer:
    """The feed's reader an endpoint stands for: it receives what its owner could read."""
    return feed.Viewer(
        Scope(endpoint.scope),
        owner_user_id=endpoint.owner_user_id,
        marketplace_id=endpoint.marketplace_id,
    )


async def _check_target(policy: TargetPolicy, url: str) -> None:
    try:
        await policy.check(url)
    except TargetRefused as exc:
        raise Unprocessable(
            f"this URL may not receive webhooks: {exc}",
            details=[{"loc": "body.url", "message": str(exc)}],
        ) from exc


def _set_secret(endpoint: WebhookEndpoint, keyring: Keyring, secret: str) -> None:
    endpoint.secret_ciphertext = keyring.encrypt(secret)
    endpoint.fernet_key_id = keyring.primary_key_id


async def rotate_all(session: AsyncSession, keyring: Keyring, batch: int = 500) -> int:
    """Re-encrypt the secrets (current and previous) of every endpoint not yet under the
    newest key; returns how many endpoints were rotated."""
    rotated = 0
    while rows := await repository.not_under_key(session, keyring.primary_key_id, batch):
        for endpoint in rows:
            endpoint.secret_ciphertext = keyring.rotate(endpoint.secret_ciphertext)
            if endpoint.previous_secret_ciphertext is not None:
                endpoint.previous_secret_ciphertext = keyring.rotate(
                    endpoint.previous_secret_ciphertext
                )
            endpoint.fernet_key_id = keyring.primary_key_id
        await session.flush()
        rotated += len(rows)
    return rotated


async def create(
    session: AsyncSession,
    keyring: Keyring,
    policy: TargetPolicy,
    caller: Caller,
    body: WebhookCreate,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint of the caller's, and its secret (in the clear only here)."""
    await _check_target(policy, body.url)
    endpoint = WebhookEndpoint(
        url=body.url,
        types=[name.value for name in body.types],
        description=body.description,
        enabled=True,
        scope=caller.scope.value,
        owner_user_id=caller.owner_user_id if caller.scope is Scope.developer else None,
        marketplace_id=caller.marketplace_id,
        api_key_id=caller.api_key_id,
        after_seq=await events.head(session) or 0,
    )
    secret = new_secret()
    _set_secret(endpoint, keyring, secret)
    session.add(endpoint)
    await session.flush()
    return endpoint, secret


async def get(session: AsyncSession, caller: Caller, endpoint_id: str) -> WebhookEndpoint:
    """The caller's endpoint; another's is not found, like one that does not exist."""
    endpoint = await repository.get_owned(session, endpoint_id, owner_of(caller))
    if endpoint is None:
        raise NotFound("webhook")
    return endpoint


async def update(
    session: AsyncSession,
    policy: TargetPolicy,
    caller: Caller,
    endpoint_id: str,
    body: WebhookUpdate,
) -> WebhookEndpoint:
    endpoint = await get(session, caller, endpoint_id)
    if body.url is not None:
        await _check_target(policy, body.url)
        endpoint.url = body.url
    if body.types is not None:
        endpoint.types = [name.value for name in body.types]
    if "description" in body.model_fields_set:
        endpoint.description = body.description
    if body.enabled is not None:
        endpoint.enabled = body.enabled
        if body.enabled:
            # Enabled again: its failures so far no longer count towards disabling it, and it
            # answers to the key that enabled it (the one that registered it may be revoked).
            endpoint.failing_since = endpoint.disabled_at = endpoint.disabled_reason = None
            endpoint.api_key_id = caller.api_key_id
    await session.flush()
    return endpoint


async def rotate_secret(
    session: AsyncSession,
    keyring: Keyring,
    caller: Caller,
    endpoint_id: str,
    now: datetime,
    overlap: timedelta,
) -> tuple[WebhookEndpoint, str]:
    """A new secret; the current one goes on signing too until `now + overlap`."""
    endpoint = await get(session, caller, endpoint_id)
    # Under the newest key like the new one: the row names one key for both secrets, and
    # `keys rotate` must not leave the previous one under a key about to be retired.
    endpoint.previous_secret_ciphertext = keyring.rotate(endpoint.secret_ciphertext)
    endpoint.previous_secret_expires_at = now + overlap
    secret = new_secret()
    _set_secret(endpoint, keyring, secret)
    await session.flush()
    return endpoint, secret


async def replay(
    session: AsyncSession, caller: Caller, endpoint_id: str, after_seq: int, now: datetime
) -> tuple[list[str], int]:
    """New deliveries of the endpoint's events after `after_seq` (delivered before or not),
    at most REPLAY_LIMIT; their ids and the `seq` the replay reached."""
    endpoint = await get(session, caller, endpoint_id)
    head = await events.head(session)
    matched = await repository.matching_events(
        session,
        viewer_of(endpoint).visible(),
        after_seq,
        head,
        endpoint.types or None,
        REPLAY_LIMIT,
    )
    # Its own source: these rows stand beside the dispatcher's, and beside other replays'.
    ids = await repository.add_deliveries(
        session, endpoint.id, [event_id for event_id, _ in matched], new_id(), now
    )
    if len(matched) == REPLAY_LIMIT:
        reached = matched[-1].seq
        assert reached is not None, "matched events are sequenced"
    else:
        reached = max(head or 0, after_seq)
    return ids, reached


async def match_new_events(session: AsyncSession, now: datetime) -> tuple[list[str], bool]:
    """Owe each enabled endpoint the events numbered since the last call that it matches
    (DISPATCH_BATCH of them at most); the new deliveries' ids, and whether every numbered
    event is matched now. The dispatcher's position is locked for the transaction, so two
    calls never match the same events."""
    cursor = await events.lock_counter(session, events.WEBHOOK_DISPATCH)
    if cursor is None:
        # The first call starts where the oldest endpoint does (at its creation), or at the
        # newest event: no endpoint wants an event older than itself.
        cursor = await events.create_counter(
            session, events.WEBHOOK_DISPATCH, await repository.earliest_start(session)
        )
    head = await events.head(session)
    if head is None or head <= cursor:
        return [], True
    up_to = min(head, cursor + DISPATCH_BATCH)
    owed: list[str] = []
    for endpoint in await repository.enabled_endpoints(session):
        matched = await repository.matching_events(
            session,
            viewer_of(endpoint).visible(),
            max(cursor, endpoint.after_seq),
            up_to,
            endpoint.types or None,
        )
        owed += await repository.add_deliveries(
            session, endpoint.id, [event_id for event_id, _ in matched], DISPATCHED, now
        )
    await events.move_counter(session, events.WEBHOOK_DISPATCH, up_to)
    return owed, up_to == head


@dataclass(frozen=True)
class Outbound:
    """One claimed delivery, ready to send: what to POST, signed, and where."""

    delivery_id: str
    endpoint_id: str
    # Failed attempts before this one: where the retry schedule stands.
    attempts_before: int
    url: str
    body: bytes
    headers: dict[str, str] = field(repr=False)


def outbounds(
    claimed: Sequence[tuple[WebhookDelivery, WebhookEndpoint, Event]],
    keyring: Keyring,
    sent_at: datetime,
) -> list[Outbound]:
    """Each claimed delivery's envelope, the same bytes as in the owner's feed, with the
    Standard Webhooks headers: the event's id, the time of sending, and a signature by each
    live secret. An event's envelope is rendered once for all its endpoints, an endpoint's
    secrets decrypted once for all its deliveries."""
    bodies: dict[tuple[str, bool], tuple[str, bytes]] = {}
    signers: dict[str, list[Webhook]] = {}
    made = []
    for delivery, endpoint, event in claimed:
        anonymous = viewer_of(endpoint).anonymous
        if (event.id, anonymous) not in bodies:
            envelope = feed.to_out(event, anonymous=anonymous)
            bodies[event.id, anonymous] = envelope.id, envelope.model_dump_json().encode()
        envelope_id, body = bodies[event.id, anonymous]
        if endpoint.id not in signers:
            signers[endpoint.id] = [
                Webhook(keyring.decrypt(ciphertext))
                for ciphertext in _live_secrets(endpoint, sent_at)
            ]
        signatures = [signer.sign(envelope_id, sent_at, body) for signer in signers[endpoint.id]]
        made.append(
            Outbound(
                delivery_id=delivery.id,
                endpoint_id=endpoint.id,
                attempts_before=delivery.attempts,
                url=endpoint.url,
                body=body,
                headers={
                    "content-type": "application/json",
                    "webhook-id": envelope_id,
                    "webhook-timestamp": str(int(sent_at.timestamp())),
                    "webhook-signature": " ".join(signatures),
                },
            )
        )
    return made


def _live_secrets(endpoint: WebhookEndpoint, now: datetime) -> list[str]:
    """The ciphertexts of the secrets that sign now: the current one, and the previous one
    until it expires."""
    live = [endpoint.secret_ciphertext]
    expires = endpoint.previous_secret_expires_at
    if endpoint.previous_secret_ciphertext is not None and expires and expires > now:
        live.append(endpoint.previous_secret_ciphertext)
    return live


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: an answer's status code, or the error that stopped it."""

    attempted_at: datetime
    duration_ms: int
    status_code: int | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


async def record_attempts(
    session: AsyncSession,
    lease_id: str,
    results: Sequence[tuple[Outbound, Outcome]],
    settings: Settings,
) -> None:
    """Keep the attempts, settle their deliveries (delivered, retried later, or failed once
    the schedule is spent) if `lease_id` still holds them, and note each endpoint's health
    once: answering if any of its attempts here got a 2xx, else failing (long enough, and it
    is disabled)."""
    await repository.add_attempts(
        session,
        [
            {
                "id": new_id(),
                "delivery_id": sent.delivery_id,
                "attempted_at": outcome.attempted_at,
                "status_code": outcome.status_code,
                "duration_ms": outcome.duration_ms,
                "error": outcome.error,
            }
            for sent, outcome in results
        ],
    )
    await repository.settle_delivered(
        session, lease_id, [sent.delivery_id for sent, outcome in results if outcome.delivered]
    )
    retries = []
    for sent, outcome in results:
        if not outcome.delivered:
            retry_at = next_attempt_at(outcome.attempted_at, sent.attempts_before + 1, settings)
            retries.append((sent.delivery_id, PENDING if retry_at else FAILED, retry_at))
    await repository.settle_undelivered(session, lease_id, retries)
    await _note_endpoints(session, results, settings)


async def _note_endpoints(
    session: AsyncSession, results: Sequence[tuple[Outbound, Outcome]], settings: Settings
) -> None:
    answered = {sent.endpoint_id for sent, outcome in results if outcome.delivered}
    await repository.endpoints_answered(session, sorted(answered))
    failures: dict[str, list[datetime]] = {}
    for sent, outcome in results:
        if sent.endpoint_id not in answered:
            failures.setdefault(sent.endpoint_id, []).append(outcome.attempted_at)
    failing_for = timedelta(hours=settings.webhook_disable_after_hours)
    # In id order, as answered above: two jobs lock the endpoints they share in one order.
    for endpoint_id, failed_at in sorted(failures.items()):
        first, last = min(failed_at), max(failed_at)
        endpoint = await repository.endpoint_failed(session, endpoint_id, first, last - failing_for)
        if endpoint is not None:
            hours = failing_for.total_seconds() / 3600
            disable(session, endpoint, last, f"every attempt failed for {hours:g} hours")


def next_attempt_at(failed_at: datetime, attempts: int, settings: Settings) -> datetime | None:
    """When to try again after `attempts` failed ones, jittered; None: the schedule is spent."""
    schedule = settings.webhook_retry_schedule_s
    if attempts > len(schedule):
        return None
    jitter = settings.webhook_retry_jitter
    # Jittered so that the deliveries that failed together (an endpoint down) do not all
    # come back in the same second.
    delay = schedule[attempts - 1] * random.uniform(1 - jitter, 1 + jitter)  # noqa: S311 - spreads, guards nothing
    return failed_at + timedelta(seconds=delay)


async def disable_registered_by(session: AsyncSession, api_key_id: str, now: datetime) -> None:
    """A revoked key's endpoints stop with it: a leaked key's thief may have registered their
    own receiver. A live key of the owner may enable one again (it then answers to that key)."""
    for endpoint in await repository.enabled_of_key(session, api_key_id):
        disable(
            session,
            endpoint,
            now,
            "the API key that registered it was revoked: a live key of its owner may enable it",
        )


def disable(session: AsyncSession, endpoint: WebhookEndpoint, now: datetime, reason: str) -> None:
    """Stop sending to an endpoint, and tell its owner with a `webhook.disabled` event: a
    developer's is addressed to their user, a marketplace key's to its marketplace, an
    admin's to no one but admins."""
    endpoint.enabled = False
    endpoint.disabled_at = now
    endpoint.disabled_reason = reason
    record(
        session,
        EventType.webhook_disabled,
        data={
            "webhook_id": endpoint.id,
            "url": endpoint.url,
            "reason": endpoint.disabled_reason,
            "failing_since": endpoint.failing_since,
        },
        user_id=endpoint.owner_user_id,
        marketplace_id=endpoint.marketplace_id,
    )


async def delivery_page(
    session: AsyncSession, caller: Caller, endpoint_id: str, after_id: str | None, limit: int
) -> tuple[Sequence[WebhookDelivery], dict[str, list[WebhookAttempt]]]:
    """A page of the endpoint's deliveries (limit rows, from `after_id`) and the attempts of
    each, by delivery id."""
    endpoint = await get(session, caller, endpoint_id)
    rows = await repository.deliveries_page(session, endpoint.id, after_id, limit)
    attempts: dict[str, list[WebhookAttempt]] = {row.id: [] for row in rows}
    for attempt in await repository.attempts_of(session, list(attempts)):
        attempts[attempt.delivery_id].append(attempt)
    return rows, attempts
