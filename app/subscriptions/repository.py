"""A renter's subscriptions and what hangs off them (trades, decisions and their votes, the
position, the equity points): the entities services work on, and the renter's views as rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.reads import RowReader, Rows
from app.models import Decision, LlmVote, PerformanceLog, Position, Subscription, Trade, User
from app.subscriptions.schemas import SubscriptionOut
from app.users.renter import RenterRef

# Scoped by the owner (its marketplace and principal) in the query itself: another renter's
# row is simply not found, and no lookup of the renter's user row comes first. Built once, at
# import: on the hot path, constructing a statement costs more than running it from
# SQLAlchemy's compiled cache.
_OF_RENTER = (
    select(Subscription)
    .join(User, User.id == Subscription.user_id)
    .where(
        User.marketplace_id == bindparam("marketplace_id"),
        User.principal == bindparam("principal"),
    )
)
_OWNED = _OF_RENTER.where(Subscription.id == bindparam("sub_id"))
# The renter's GETs answer with these same statements narrowed to SubscriptionOut's columns,
# read as rows (app/core/reads.py says which reads do and why). Ids are lower-case hex: every
# id sorts after "", the first page's bound.
_SUBSCRIPTIONS = Subscription.__table__.c
_SHOWN_COLUMNS = [column for column in _SUBSCRIPTIONS if column.key in SubscriptionOut.model_fields]
_OWNED_VIEW = Rows(_OWNED.with_only_columns(*_SHOWN_COLUMNS))
_PAGE_VIEW = Rows(
    _OF_RENTER.with_only_columns(*_SHOWN_COLUMNS)
    .where(_SUBSCRIPTIONS.id > bindparam("after_id"))
    .order_by(_SUBSCRIPTIONS.id)
    .limit(bindparam("limit"))
)


async def get_owned(session: AsyncSession, owner: RenterRef, sub_id: str) -> Subscription | None:
    """The renter's subscription as an entity, for a service to work on."""
    return await session.scalar(
        _OWNED,
        {"marketplace_id": owner.marketplace_id, "principal": owner.principal, "sub_id": sub_id},
    )


async def owned_view(reader: RowReader, owner: RenterRef, sub_id: str) -> dict[str, Any] | None:
    """The renter's subscription as SubscriptionOut's fields, None when it has none by the id."""
    return await _OWNED_VIEW.one_or_none(
        reader, marketplace_id=owner.marketplace_id, principal=owner.principal, sub_id=sub_id
    )


async def page_of_renter(
    reader: RowReader, owner: RenterRef, after_id: str | None, limit: int
) -> list[dict[str, Any]]:
    return await _PAGE_VIEW.all(
        reader,
        marketplace_id=owner.marketplace_id,
        principal=owner.principal,
        after_id=after_id or "",
        limit=limit,
    )


async def trades_page(
    session: AsyncSession, sub_id: str, after_id: str | None, limit: int
) -> Sequence[Trade]:
    query = select(Trade).where(Trade.subscription_id == sub_id).order_by(Trade.id).limit(limit)
    if after_id:
        query = query.where(Trade.id > after_id)
    return (await session.scalars(query)).all()


async def decisions_page(
    session: AsyncSession, sub: Subscription, after_id: str | None, limit: int
) -> Sequence[Decision]:
    """The shared decisions of the subscription's bot version, market and timeframe."""
    query = (
        select(Decision)
        .where(
            Decision.bot_version_id == sub.bot_version_id,
            Decision.symbol == sub.symbol,
            Decision.timeframe == sub.timeframe,
            Decision.created_at >= sub.created_at,
        )
        .order_by(Decision.id)
        .limit(limit)
    )
    if after_id:
        query = query.where(Decision.id > after_id)
    return (await session.scalars(query)).all()


async def votes_of(session: AsyncSession, decision_ids: Sequence[str]) -> Sequence[LlmVote]:
    if not decision_ids:
        return []
    return (
        await session.scalars(
            select(LlmVote)
            .where(LlmVote.decision_id.in_(decision_ids))
            # Ids made in the same millisecond sort at random; seats do not (votes of
            # decisions made before seats were recorded all sit at 0: provider and model).
            .order_by(LlmVote.decision_id, LlmVote.seat, LlmVote.provider, LlmVote.model)
        )
    ).all()


async def position_of(session: AsyncSession, sub_id: str) -> Position | None:
    return await session.scalar(select(Position).where(Position.subscription_id == sub_id))


async def equity_points(session: AsyncSession, sub_id: str) -> Sequence[PerformanceLog]:
    return (
        await session.scalars(
            select(PerformanceLog)
            .where(PerformanceLog.subscription_id == sub_id)
            .order_by(PerformanceLog.recorded_at)
        )
    ).all()


async def filled_trade_count(session: AsyncSession, sub_id: str) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(Trade)
        .where(Trade.subscription_id == sub_id, Trade.status == "filled")
    )
    return int(count or 0)


async def cancel_all_of_user(session: AsyncSession, user_id: str, reason: str) -> None:
    await session.execute(
        update(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status.in_(("active", "paused")))
        .values(status="cancelled", status_reason=reason)
    )


async def active_subscriptions(session: AsyncSession, ids: Sequence[str]) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription).where(Subscription.id.in_(ids), Subscription.status == "active")
    )
    return list(rows.all())


async def active_groups(
    session: AsyncSession, market: tuple[str, str] | None = None
) -> list[tuple[str, str, str]]:
    """(bot version, symbol, timeframe) with at least one active subscription, of one
    (symbol, timeframe) `market` or of all."""
    query = select(Subscription.bot_version_id, Subscription.symbol, Subscription.timeframe)
    if market is not None:
        query = query.where(Subscription.symbol == market[0], Subscription.timeframe == market[1])
    rows = await session.execute(
        query.where(Subscription.status == "active")
        .distinct()
        .order_by(Subscription.bot_version_id, Subscription.symbol, Subscription.timeframe)
    )
    return [(v, s, t) for v, s, t in rows.all()]


async def active_subscription_ids(
    session: AsyncSession, bot_version_id: str, symbol: str, timeframe: str
) -> list[str]:
    ids = await session.scalars(
        select(Subscription.id)
        .where(
            Subscription.status == "active",
            Subscription.bot_version_id == bot_version_id,
            Subscription.symbol == symbol,
            Subscription.timeframe == timeframe,
        )
        .order_by(Subscription.id)
    )
    return list(ids.all())


async def subscription_ids_with(session: AsyncSession, status: tuple[str, ...]) -> list[str]:
    rows = await session.scalars(
        select(Subscription.id).where(Subscription.status.in_(status)).order_by(Subscription.id)
    )
    return list(rows.all())


async def due_to_expire(session: AsyncSession, now: datetime) -> list[Subscription]:
    """Locked until the transaction ends, so that a status a renter sets meanwhile is seen."""
    rows = await session.scalars(
        select(Subscription)
        .where(
            Subscription.status.in_(("active", "paused")),
            Subscription.ends_at.is_not(None),
            Subscription.ends_at <= now,
        )
        .order_by(Subscription.id)
        .with_for_update()
    )
    return list(rows.all())


async def subscriptions_with(session: AsyncSession, status: tuple[str, ...]) -> list[Subscription]:
    rows = await session.scalars(
        select(Subscription).where(Subscription.status.in_(status)).order_by(Subscription.id)
    )
    return list(rows.all())
