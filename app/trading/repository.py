"""Trading's rows: order attempts with their leases and fences, decisions with their claims,
positions, and the facts the risk checks and the reconciler read."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ColumnElement, case, delete, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import (
    BotVersion,
    Decision,
    DecisionClaim,
    PerformanceLog,
    Position,
    Subscription,
    Trade,
    User,
)


async def trade_by_client_order_id(session: AsyncSession, client_order_id: str) -> Trade | None:
    return await session.scalar(select(Trade).where(Trade.client_order_id == client_order_id))


async def held_symbols(session: AsyncSession) -> list[str]:
    """The symbols of active subscriptions' open positions: those whose exits are watched."""
    rows = await session.scalars(
        select(Position.symbol)
        .join(Subscription, Subscription.id == Position.subscription_id)
        .where(Subscription.status == "active", Position.quantity > 0)
        .distinct()
    )
    return list(rows.all())


async def open_positions(
    session: AsyncSession, symbols: Iterable[str], after: str, limit: int
) -> list[tuple[Subscription, Position]]:
    """Active subscriptions' open positions of `symbols`, by subscription id from after
    `after`: a batch of at most `limit`."""
    rows = await session.execute(
        select(Subscription, Position)
        .join(Position, Position.subscription_id == Subscription.id)
        .where(
            Subscription.status == "active",
            Position.quantity > 0,
            Position.symbol.in_(list(symbols)),
            Subscription.id > after,
        )
        .order_by(Subscription.id)
        .limit(limit)
    )
    return [(sub, position) for sub, position in rows.all()]


async def raise_peaks(session: AsyncSession, highs: Mapping[str, Decimal]) -> None:
    """Each symbol's open positions' peak raised to the symbol's high where below it (or
    unset), in one statement for all symbols: the trailing stops' peaks follow the streamed
    prices."""
    if not highs:
        return
    high = case(highs, value=Position.symbol)
    await session.execute(
        update(Position)
        .where(
            Position.symbol.in_(list(highs)),
            Position.quantity > 0,
            or_(Position.peak_price.is_(None), Position.peak_price < high),
        )
        .values(peak_price=high)
        .execution_options(synchronize_session=False)
    )


async def position_for_update(session: AsyncSession, sub_id: str) -> Position | None:
    return (await positions_of(session, [sub_id], lock=True)).get(sub_id)


async def positions_of(
    session: AsyncSession, sub_ids: Sequence[str], *, lock: bool = False
) -> dict[str, Position]:
    """The positions of these subscriptions, by subscription (those without one are missing);
    `lock`: locked until the transaction ends."""
    query = select(Position).where(Position.subscription_id.in_(sub_ids))
    if lock:
        query = query.order_by(Position.subscription_id).with_for_update()
    rows = await session.scalars(query)
    return {position.subscription_id: position for position in rows.all()}


async def users_of(session: AsyncSession, ids: Iterable[str]) -> Sequence[User]:
    return (await session.scalars(select(User).where(User.id.in_(set(ids))))).all()


async def bot_versions(session: AsyncSession, ids: Iterable[str]) -> dict[str, BotVersion]:
    rows = await session.scalars(select(BotVersion).where(BotVersion.id.in_(set(ids))))
    return {version.id: version for version in rows.all()}


UNRESOLVED = ("pending", "unknown")


def _lease_over(now: datetime) -> ColumnElement[bool]:
    """Nobody holds the attempt any more (rows from before leases have none)."""
    return or_(Trade.lease_until.is_(None), Trade.lease_until < now)


async def take_over(
    session: AsyncSession, trade_id: str, now: datetime, lease_until: datetime
) -> int | None:
    """Claim an unresolved attempt whose lease has run out; the new fence, or None when
    another worker still holds it (or has just won it: one UPDATE decides between us)."""
    result = await session.execute(
        update(Trade)
        .where(
            Trade.id == trade_id,
            Trade.status.in_(UNRESOLVED),
            _lease_over(now),
        )
        .values(fence=Trade.fence + 1, lease_until=lease_until)
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return None
    return await session.scalar(select(Trade.fence).where(Trade.id == trade_id))


async def fenced_update(
    session: AsyncSession,
    trade_id: str,
    fence: int,
    *,
    send_by: datetime | None = None,
    **values: object,
) -> bool:
    """Change an unresolved attempt only if `fence` still owns it (and, given `send_by`, only
    while its decision is fresh at that instant). On SQLite this first write also takes the
    database's write lock, so the rest of the transaction is serialised with other writers."""
    query = update(Trade).where(
        Trade.id == trade_id, Trade.fence == fence, Trade.status.in_(UNRESOLVED)
    )
    if send_by is not None:
        query = query.where(or_(Trade.send_before.is_(None), Trade.send_before > send_by))
    result = await session.execute(query.values(**values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


def _sells_in_flight() -> list[ColumnElement[bool]]:
    """Sells sent and not yet resolved: what they asked for is not ours to sell again until
    their outcome is known."""
    return [Trade.side == "SELL", Trade.status.in_(UNRESOLVED), Trade.sent_at.is_not(None)]


async def reserved_by_others(session: AsyncSession, trade: Trade) -> Decimal:
    """Base quantity that this subscription's other sells in flight have asked for."""
    quantities = await session.scalars(
        select(Trade.requested_quantity).where(
            Trade.subscription_id == trade.subscription_id,
            Trade.id != trade.id,
            *_sells_in_flight(),
        )
    )
    return sum((q for q in quantities.all() if q is not None), Decimal(0))


async def reserved_by_sells(session: AsyncSession, sub_ids: Sequence[str]) -> dict[str, Decimal]:
    """Base quantity that each subscription's sells in flight have asked for (those with none
    are missing)."""
    if not sub_ids:
        return {}
    rows = await session.execute(
        select(Trade.subscription_id, Trade.requested_quantity).where(
            Trade.subscription_id.in_(sub_ids), *_sells_in_flight()
        )
    )
    reserved: dict[str, Decimal] = {}
    for sub_id, quantity in rows.all():
        reserved[sub_id] = reserved.get(sub_id, Decimal(0)) + (quantity or Decimal(0))
    return reserved


async def expired_leases(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    rows = await session.scalars(
        select(Trade.id)
        .where(Trade.status.in_(UNRESOLVED), _lease_over(now))
        .order_by(Trade.lease_until)
        .limit(limit)
    )
    return list(rows.all())


async def decision_for(
    session: AsyncSession, bot_version_id: str, symbol: str, timeframe: str, candle: datetime
) -> Decision | None:
    return await session.scalar(
        select(Decision).where(
            Decision.bot_version_id == bot_version_id,
            Decision.symbol == symbol,
            Decision.timeframe == timeframe,
            Decision.candle_open_at == candle,
        )
    )


async def claim_of(
    session: AsyncSession, bot_version_id: str, symbol: str, timeframe: str, candle: datetime
) -> DecisionClaim | None:
    return await session.scalar(
        select(DecisionClaim).where(
            DecisionClaim.bot_version_id == bot_version_id,
            DecisionClaim.symbol == symbol,
            DecisionClaim.timeframe == timeframe,
            DecisionClaim.candle_open_at == candle,
        )
    )


async def add_claim(
    session: AsyncSession,
    bot_version_id: str,
    symbol: str,
    timeframe: str,
    candle: datetime,
    expires_at: datetime,
) -> DecisionClaim:
    """Claim a decision as its first attempt; IntegrityError when another holds it."""
    claim = DecisionClaim(
        bot_version_id=bot_version_id,
        symbol=symbol,
        timeframe=timeframe,
        candle_open_at=candle,
        attempt=1,
        expires_at=expires_at,
        reserved_usd=Decimal(0),
    )
    session.add(claim)
    await session.flush()
    return claim


async def take_over_claim(
    session: AsyncSession, claim_id: str, attempt: int, now: datetime, expires_at: datetime
) -> bool:
    """Take an expired claim as attempt `attempt + 1`, dropping the crashed round's
    reservation. One conditional UPDATE decides between concurrent takers: only one sees a
    row change."""
    result = await session.execute(
        update(DecisionClaim)
        .where(
            DecisionClaim.id == claim_id,
            DecisionClaim.attempt == attempt,
            DecisionClaim.expires_at <= now,
        )
        .values(attempt=attempt + 1, expires_at=expires_at, reserved_usd=Decimal(0))
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def reserve(
    session: AsyncSession, claim_id: str, attempt: int, amount: Decimal, expires_at: datetime
) -> bool:
    """Set the round's reservation and lease, if the claim is still this attempt's."""
    result = await session.execute(
        update(DecisionClaim)
        .where(DecisionClaim.id == claim_id, DecisionClaim.attempt == attempt)
        .values(reserved_usd=amount, expires_at=expires_at)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def release_claim(session: AsyncSession, claim_id: str, attempt: int) -> bool:
    """Delete the claim, and with it its reservation, if it is still this attempt's."""
    result = await session.execute(
        delete(DecisionClaim).where(DecisionClaim.id == claim_id, DecisionClaim.attempt == attempt)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


async def filled_trades_since(
    session: AsyncSession, sub_ids: Sequence[str], since: datetime
) -> list[tuple[str, str, Decimal | None, datetime]]:
    """(subscription, side, realized PnL, filled at) of the subscriptions' trades filled since
    `since`, oldest first: what their risk checks count, in one query for a chunk."""
    rows = await session.execute(
        select(Trade.subscription_id, Trade.side, Trade.realized_pnl, Trade.created_at)
        .where(
            Trade.subscription_id.in_(sub_ids),
            Trade.status == "filled",
            Trade.created_at >= since,
        )
        .order_by(Trade.created_at)
    )
    return [(sub_id, side, pnl, at) for sub_id, side, pnl, at in rows.all()]


async def equity_of(session: AsyncSession, sub_ids: Sequence[str]) -> dict[str, list[Decimal]]:
    """Each subscription's equity points, oldest first (those without any are missing)."""
    rows = await session.execute(
        select(PerformanceLog.subscription_id, PerformanceLog.equity)
        .where(PerformanceLog.subscription_id.in_(sub_ids))
        .order_by(PerformanceLog.recorded_at)
    )
    equity: dict[str, list[Decimal]] = defaultdict(list)
    for sub_id, point in rows.all():
        equity[sub_id].append(point)
    return dict(equity)


async def filled_buys(session: AsyncSession, sub_id: str) -> int:
    rows = await session.scalars(
        select(Trade.id).where(
            Trade.subscription_id == sub_id, Trade.status == "filled", Trade.side == "BUY"
        )
    )
    return len(rows.all())


async def orderable_decisions(
    session: AsyncSession, created_from: datetime, created_before: datetime
) -> list[Decision]:
    """Non-HOLD decisions made in [created_from, created_before), oldest first."""
    rows = await session.scalars(
        select(Decision)
        .where(
            Decision.action != "HOLD",
            Decision.created_at >= created_from,
            Decision.created_at < created_before,
        )
        .order_by(Decision.created_at)
    )
    return list(rows.all())


async def unexecuted_subscription_ids(session: AsyncSession, decision: Decision) -> list[str]:
    """Active subscriptions that were there when `decision` was made and have no attempt for
    it; for a SELL, only those holding something to sell."""
    attempted = select(Trade.id).where(
        Trade.subscription_id == Subscription.id, Trade.decision_id == decision.id
    )
    query = select(Subscription.id).where(
        Subscription.status == "active",
        Subscription.bot_version_id == decision.bot_version_id,
        Subscription.symbol == decision.symbol,
        Subscription.timeframe == decision.timeframe,
        Subscription.created_at <= decision.created_at,
        ~attempted.exists(),
    )
    if decision.action == "SELL":
        query = query.join(Position, Position.subscription_id == Subscription.id).where(
            Position.quantity != Decimal(0)
        )
    rows = await session.scalars(query.order_by(Subscription.id))
    return list(rows.all())
