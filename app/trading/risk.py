"""Risk checks run before any order of a subscription; each refusal says why.

Limits are the bot's risk defaults overridden by the renter's per-subscription values. Pure:
the caller reads the facts a check needs (live trading from app/trading/repository.py, a
backtest from its replay), so both run the same checks.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from app.bots.strategy import RiskDefaults
from app.models import Position
from app.trading.fills import Side


@dataclass(frozen=True)
class RiskVerdict:
    allowed: bool
    reason: str | None = None
    limit: str | None = None  # which limit refused, for metrics
    pause_subscription: bool = False  # a drawdown breach stops the subscription itself


ALLOWED = RiskVerdict(True)


def limits_for(defaults: RiskDefaults, overrides: dict[str, object]) -> RiskDefaults:
    if not overrides:
        return defaults  # most renters keep the bot's limits: no validation to repeat
    return RiskDefaults.model_validate({**defaults.model_dump(), **overrides})


def start_of_day(now: datetime) -> datetime:
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


@dataclass(frozen=True)
class Sale:
    realized_pnl: Decimal | None
    at: datetime


@dataclass(frozen=True)
class BuyFacts:
    """What a buy is checked against besides today's trades."""

    held_quantity: Decimal
    last_sale: Sale | None  # the latest filled sell; read only when a cooldown is set
    equity: Sequence[Decimal]  # equity points, oldest first (only the peak and last count)


def verdict(
    limits: RiskDefaults,
    side: Side,
    price: Decimal,
    order_quote: Decimal,
    today: Sequence[Decimal | None],
    buy: BuyFacts | None,
    reference_capital: Decimal,
    now: datetime,
) -> RiskVerdict:
    """The risk decision itself, free of storage, so that live trading and a backtest run the
    same one. `today`: the realized PnL (None for a buy) of each trade filled since
    start_of_day(now); `buy`: required for a buy, unread for a sell. The first limit that
    refuses, in the order below, says why."""
    if len(today) >= limits.max_trades_per_day:
        return RiskVerdict(
            False,
            limit="max_trades_per_day",
            reason=f"max trades per day reached ({limits.max_trades_per_day})",
        )
    if side is Side.SELL:
        return ALLOWED  # selling only reduces risk; the executor never sells more than held
    assert buy is not None, "a buy is checked against its exposure"
    return (
        _position_refusal(limits, buy.held_quantity * price, order_quote)
        or _daily_loss_refusal(limits, today)
        or _cooldown_refusal(limits, buy.last_sale, now)
        or _drawdown_refusal(limits, reference_capital, buy.equity)
        or ALLOWED
    )


def _position_refusal(
    limits: RiskDefaults, held: Decimal, order_quote: Decimal
) -> RiskVerdict | None:
    if limits.max_position_quote is not None and held + order_quote > limits.max_position_quote:
        return RiskVerdict(
            False,
            limit="max_position_quote",
            reason=f"position would exceed {limits.max_position_quote} quote "
            f"({(held + order_quote).quantize(Decimal('0.01'))})",
        )
    return None


def _daily_loss_refusal(
    limits: RiskDefaults, today: Sequence[Decimal | None]
) -> RiskVerdict | None:
    lost_today = -sum((pnl for pnl in today if pnl is not None and pnl < 0), Decimal(0))
    if limits.daily_loss_limit_quote is not None and lost_today >= limits.daily_loss_limit_quote:
        return RiskVerdict(
            False,
            limit="daily_loss_limit",
            reason=f"daily loss limit of {limits.daily_loss_limit_quote} reached",
        )
    return None


def _cooldown_refusal(limits: RiskDefaults, sale: Sale | None, now: datetime) -> RiskVerdict | None:
    """A buy waits the cooldown out after a losing sale."""
    if not limits.cooldown_minutes_after_loss:
        return None
    cooldown = timedelta(minutes=limits.cooldown_minutes_after_loss)
    if (
        sale is not None
        and sale.realized_pnl is not None
        and sale.realized_pnl < 0
        and now - sale.at < cooldown
    ):
        return RiskVerdict(
            False,
            limit="cooldown",
            reason=f"cooling down {limits.cooldown_minutes_after_loss} min after a loss",
        )
    return None


def _drawdown_refusal(
    limits: RiskDefaults, reference_capital: Decimal, equity: Sequence[Decimal]
) -> RiskVerdict | None:
    drawdown = drawdown_pct(reference_capital, equity)
    if drawdown >= limits.max_drawdown_pct:
        return RiskVerdict(
            False,
            limit="max_drawdown",
            reason=f"max drawdown of {limits.max_drawdown_pct}% breached "
            f"({drawdown.quantize(Decimal('0.01'))}%)",
            pause_subscription=True,
        )
    return None


def drawdown_pct(capital: Decimal, equity: Sequence[Decimal]) -> Decimal:
    """How far the latest equity point is below the highest so far (or the capital)."""
    if not equity:
        return Decimal(0)
    peak = max([capital, *equity])
    return (peak - equity[-1]) / peak * 100 if peak > 0 else Decimal(0)


@dataclass(frozen=True)
class ExitLevels:
    """The prices at which a held position is sold to protect it (None: not configured)."""

    stop_loss: Decimal | None
    take_profit: Decimal | None
    trailing_stop: Decimal | None


def exit_levels(limits: RiskDefaults, average_cost: Decimal, peak: Decimal) -> ExitLevels:
    def level(pct: Decimal | None, base: Decimal, direction: int) -> Decimal | None:
        return base * (1 + direction * pct / 100) if pct else None

    return ExitLevels(
        stop_loss=level(limits.stop_loss_pct, average_cost, -1),
        take_profit=level(limits.take_profit_pct, average_cost, 1),
        trailing_stop=level(limits.trailing_stop_pct, peak, -1),
    )


@dataclass(frozen=True)
class Exit:
    kind: str  # stop_loss | take_profit | trailing_stop
    reason: str


def exit_reason(
    limits: RiskDefaults, average_cost: Decimal, peak: Decimal, price: Decimal
) -> Exit | None:
    """Why a position is sold at `price`, or None; a stop-loss is named before a take-profit."""
    levels = exit_levels(limits, average_cost, peak)
    if levels.stop_loss is not None and price <= levels.stop_loss:
        return Exit("stop_loss", f"stop-loss {limits.stop_loss_pct}% at {price}")
    if levels.take_profit is not None and price >= levels.take_profit:
        return Exit("take_profit", f"take-profit {limits.take_profit_pct}% at {price}")
    if levels.trailing_stop is not None and price <= levels.trailing_stop:
        return Exit(
            "trailing_stop", f"trailing stop {limits.trailing_stop_pct}% below {peak} at {price}"
        )
    return None


# (subscription, side, realized PnL, filled at) of a filled trade.
FilledTrade = tuple[str, str, Decimal | None, datetime]


@dataclass(frozen=True)
class RiskFacts:
    """What one subscription's order is checked against, as `verdict` takes it."""

    today: Sequence[Decimal | None]
    buy: BuyFacts | None


def facts_since(limits: Iterable[RiskDefaults], side: Side, now: datetime) -> datetime:
    """Since when a chunk's filled trades are read for `facts`."""
    day = start_of_day(now)
    # A cooldown looks back at the latest losing sale: one older than the longest cooldown
    # cannot refuse, so the filled trades since then (or since midnight) say all.
    cooldown = max((each.cooldown_minutes_after_loss or 0 for each in limits), default=0)
    return min(day, now - timedelta(minutes=cooldown)) if side is Side.BUY else day


def facts(
    ids: Sequence[str],
    filled: Iterable[FilledTrade],
    equity: Mapping[str, Sequence[Decimal]],
    positions: Mapping[str, Position],
    limits: Mapping[str, RiskDefaults],
    side: Side,
    now: datetime,
) -> dict[str, RiskFacts]:
    """The facts of many subscriptions' orders (a chunk of renters of one decision), by
    subscription. `filled`: their trades filled since `facts_since`, oldest first; `equity`:
    their equity points, oldest first (read for a buy only); `positions` and `limits` by
    subscription."""
    day = start_of_day(now)
    today: dict[str, list[Decimal | None]] = defaultdict(list)
    last_sale: dict[str, Sale] = {}
    for sub_id, trade_side, pnl, at in filled:
        if at >= day:
            today[sub_id].append(pnl)
        if trade_side == Side.SELL.value:
            last_sale[sub_id] = Sale(pnl, at)  # oldest first: the latest stays
    if side is Side.SELL:
        return {i: RiskFacts(today[i], None) for i in ids}
    return {
        i: RiskFacts(
            today[i],
            BuyFacts(
                positions[i].quantity if i in positions else Decimal(0),
                last_sale.get(i) if limits[i].cooldown_minutes_after_loss else None,
                equity.get(i, []),
            ),
        )
        for i in ids
    }
