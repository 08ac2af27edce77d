"""The SQL of webhooks: endpoints by owner, the deliveries owed, their claims and attempts."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import ColumnElement, Row, bindparam, func, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.api_keys.schemas import Scope
from app.core.db import new_id
from app.events import repository as events
from app.models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


def owned_by(
    scope: Scope, owner_user_id: str | None, marketplace_id: str | None
) -> ColumnElement[bool] | None:
    """The endpoints a key manages (None: all, for admin): a developer's, every one its user
    made with any of its keys; a marketplace key's, every one of its marketplace."""
    if scope is Scope.admin:
        return None
    if scope is Scope.developer:
        return (WebhookEndpoint.scope == Scope.developer.value) & (
            WebhookEndpoint.owner_user_id == owner_user_id
        )
    return (WebhookEndpoint.scope == Scope.marketplace.value) & (
        WebhookEndpoint.marketplace_id == marketplace_id
    )


async def get_owned(
    session: AsyncSession, endpoint_id: str, owner: ColumnElement[bool] | None
) -> WebhookEndpoint | None:
    query = select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id)
    if owner is not None:
        query = query.where(owner)
    return await session.scalar(query)


async def page_owned(
    session: AsyncSession, owner: ColumnElement[bool] | None, after_id: str | None, limit: int
) -> Sequence[WebhookEndpoint]:
    query = select(WebhookEndpoint)
    if owner is not None:
        query = query.where(owner)
    if after_id is not None:
        query = query.where(WebhookEndpoint.id > after_id)
    return (await session.scalars(query.order_by(WebhookEndpoint.id).limit(limit))).all()


async def enabled_of_key(session: AsyncSession, api_key_id: str) -> Sequence[WebhookEndpoint]:
    return (
        await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.api_key_id == api_key_id, WebhookEndpoint.enabled)
            .order_by(WebhookEndpoint.id)
        )
    ).all()


async def not_under_key(
    session: AsyncSession, key_id: str, limit: int
) -> Sequence[WebhookEndpoint]:
    return (
        await session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.fernet_key_id != key_id)
            .order_by(WebhookEndpoint.id)
            .limit(limit)
        )
    ).all()


async def earliest_start(session: AsyncSession) -> int | None:
    """The lowest `after_seq` of any endpoint; None without one."""
    return await session.scalar(select(func.min(WebhookEndpoint.after_seq)))


async def enabled_endpoints(session: AsyncSession) -> Sequence[WebhookEndpoint]:
    return (
        await session.scalars(
            select(WebhookEndpoint).where(WebhookEndpoint.enabled).order_by(WebhookEndpoint.id)
        )
    ).all()


async def matching_events(
    session: AsyncSession,
    visible: ColumnElement[bool] | None,
    after_seq: int,
    up_to_seq: int | None,
    types: Collection[str] | None,
    limit: int | None = None,
) -> Sequence[Row[str, int | None]]:
    """(id, seq) of the events the feed's filters let through, in `seq` order."""
    query = (
        select(Event.id, Event.seq)
        .where(events.matching(visible, after_seq, up_to_seq, types))
        .order_by(Event.seq)
    )
    return (await session.execute(query.limit(limit))).all()


async def add_deliveries(
    session: AsyncSession, endpoint_id: str, event_ids: Sequence[str], source: str, now: datetime
) -> list[str]:
    """One pending delivery of each event to the endpoint, due now; their ids."""
    rows = [
        {
            "id": new_id(),
            "endpoint_id": endpoint_id,
            "event_id": event_id,
            "source": source,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for event_id in event_ids
    ]
    if rows:
        await session.execute(insert(WebhookDelivery), rows)
    return [str(row["id"]) for row in rows]


def _due(now: datetime) -> ColumnElement[bool]:
    """Pending, its time come, no live claim on it, and its endpoint enabled."""
    return (
        (WebhookDelivery.status == PENDING)
        & (WebhookDelivery.next_attempt_at <= now)
        & or_(WebhookDelivery.leased_until.is_(None), WebhookDelivery.leased_until <= now)
        & WebhookDelivery.endpoint_id.in_(select(WebhookEndpoint.id).where(WebhookEndpoint.enabled))
    )


async def due(session: AsyncSession, now: datetime, limit: int) -> Sequence[str]:
    return (
        await session.scalars(
            select(WebhookDelivery.id)
            .where(_due(now))
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
    ).all()


async def claim(
    session: AsyncSession, ids: Sequence[str], lease_id: str, now: datetime, until: datetime
) -> Sequence[Row[WebhookDelivery, WebhookEndpoint, Event]]:
    """Claim those of `ids` still due under `lease_id` until `until`; each with its endpoint
    and event. One UPDATE: of two workers given the same ids, each row goes to one."""
    await session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id.in_(ids), _due(now))
        .values(lease_id=lease_id, leased_until=until)
        .execution_options(synchronize_session=False)
    )
    return (
        await session.execute(
            select(WebhookDelivery, WebhookEndpoint, Event)
            .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
            .join(Event, Event.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.lease_id == lease_id)
        )
    ).all()


async def add_attempts(session: AsyncSession, rows: Sequence[dict[str, object]]) -> None:
    """Insert the attempts in one statement, through Core: no ORM object is wanted back."""
    await (await session.connection()).execute(insert(WebhookAttempt), rows)


def _settled(**values: object) -> dict[str, object]:
    """What settling sets: one attempt more, and the claim released."""
    return {
        "attempts": WebhookDelivery.attempts + 1,
        "lease_id": None,
        "leased_until": None,
        **values,
    }


async def settle_delivered(session: AsyncSession, lease_id: str, ids: Sequence[str]) -> None:
    """Mark these deliveries delivered, those still claimed under `lease_id` (a lease that ran
    out may have been taken over: the new holder settles it then)."""
    if ids:
        await session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id.in_(ids), WebhookDelivery.lease_id == lease_id)
            .values(_settled(status=DELIVERED, next_attempt_at=None))
            .execution_options(synchronize_session=False)
        )


async def settle_undelivered(
    session: AsyncSession, lease_id: str, retries: Sequence[tuple[str, str, datetime | None]]
) -> None:
    """Set each (delivery id, status, next attempt) still claimed under `lease_id`: one
    statement run for all, through Core (the next attempts differ, jittered)."""
    if retries:
        statement = (
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == bindparam("delivery_id"),
                WebhookDelivery.lease_id == lease_id,
            )
            .values(_settled(status=bindparam("new_status"), next_attempt_at=bindparam("retry_at")))
        )
        await (await session.connection()).execute(
            statement,
            [
                {"delivery_id": delivery_id, "new_status": status, "retry_at": retry_at}
                for delivery_id, status, retry_at in retries
            ],
        )


async def endpoints_answered(session: AsyncSession, endpoint_ids: Sequence[str]) -> None:
    if endpoint_ids:
        await session.execute(
            update(WebhookEndpoint)
            .where(WebhookEndpoint.id.in_(endpoint_ids), WebhookEndpoint.failing_since.is_not(None))
            .values(failing_since=None)
            .execution_options(synchronize_session=False)
        )


async def endpoint_failed(
    session: AsyncSession, endpoint_id: str, now: datetime, since: datetime
) -> WebhookEndpoint | None:
    """Note a failed attempt; the endpoint, locked, when it is enabled and has failed since
    `since` without an answer (to be disabled)."""
    await session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id, WebhookEndpoint.failing_since.is_(None))
        .values(failing_since=now)
    )
    return await session.scalar(
        select(WebhookEndpoint)
        .where(
            WebhookEndpoint.id == endpoint_id,
            WebhookEndpoint.enabled,
            WebhookEndpoint.failing_since <= since,
        )
        .with_for_update()
    )


async def deliveries_page(
    session: AsyncSession, endpoint_id: str, after_id: str | None, limit: int
) -> Sequence[WebhookDelivery]:
    query = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if after_id is not None:
        query = query.where(WebhookDelivery.id > after_id)
    return (await session.scalars(query.order_by(WebhookDelivery.id).limit(limit))).all()


async def attempts_of(
    session: AsyncSession, delivery_ids: Collection[str]
) -> Sequence[WebhookAttempt]:
    return (
        await session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(delivery_ids))
            .order_by(WebhookAttempt.attempted_at, WebhookAttempt.id)
        )
    ).all()
