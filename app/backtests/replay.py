"""A bot version replayed over closed candles on the code that trades live.

Per candle i of the window, in this order:
  1. the order decided at candle i-1 is risk-checked and paper-filled at candle i's open
     (live: the execute job runs as the candle closes, at the ticker price, which is then the
     next candle's open);
  2. the protective exits (stop-loss, take-profit, trailing stop) are checked against candle
     i's low and high, the stops first: when one candle touches both a stop and the
     take-profit, the replay takes the stop (pessimistic, as nobody knows which came first);
  3. the equity is marked at candle i's close;
  4. the decision at candle i's close sees candles[:i+1] only (point in time), through the
     last `history_needed` of them, exactly the window the live decision reads, scored by the
     live indicator_score's own function.

The replayed subscription uses the bot version's risk defaults, a paper wallet of
`quote_amount` and orders of `quote_amount`. Money is Decimal throughout; the state
serialises to JSON (Decimals as strings) so a replay split into chunks, with the state stored
between them, is the same replay as one in one go.
"""

from __future__ import annotations

import copy
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal, Protocol

from app.backtests import metrics
from app.bots.strategy import Ensemble, Strategy
from app.integrations.binance.errors import ExchangeError
from app.integrations.binance.filters import SymbolRules
from app.trading import risk
from app.trading.candles import Candle
from app.trading.decide import history_needed
from app.trading.ensemble import RULE_VERSION, Action, Ballot, apply_rule
from app.trading.fills import Fill, Side, apply_fill, buy_quantity, paper_fill
from app.trading.indicators import Series, series_score
from app.trading.market_data import interval_ms
from app.verification.canonical import decimal_text

LlmMode = Literal["recorded", "indicators", "ask"]
VoteOrigin = Literal["recorded", "asked", "none"]

_DECIMALS = ("quote_balance", "quantity", "average_cost", "realized_pnl", "equity_peak")


@dataclass(frozen=True)
class CandleVotes:
    ballots: list[Ballot]  # every seat's, abstentions included, as the live decision has them
    cost_usd: Decimal  # LLM cost of these votes (0 for recorded or none)
    source: VoteOrigin
    reason: str | None = None  # why there are no votes, as a live decision's fallback reason
    # The ensemble rule that combines them, by version, and its parameters (None: the bot
    # version's): a recorded decision's own.
    rule_version: str = RULE_VERSION
    ensemble: Ensemble | None = None
    # Per ballot, where it came from (a recorded vote's seat, provider, model, prompt digest,
    # cost), shown with it; None when the source keeps none.
    provenance: list[dict[str, Any]] | None = None
    live_decision_id: str | None = None  # the recorded live decision
    # A live decision was recorded for the candle, but on other candles than the replay's:
    # its votes are left out.
    other_candles: bool = False


class VoteSource(Protocol):
    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        """The LLM votes for the decision at `candle_open`: `snapshot` is its indicator
        snapshot and `closes` the candles the live decision reads (oldest first, the decided
        candle last; a prompt takes the last closes of them as live does)."""
        ...


NO_VOTES = CandleVotes([], Decimal(0), "none", "indicators only: no LLM asked in this backtest")


class IndicatorsOnly:
    """A VoteSource that asks nobody: every decision is the indicator score alone."""

    async def votes(
        self, candle_open: datetime, snapshot: dict[str, Any], closes: Sequence[Candle]
    ) -> CandleVotes:
        return NO_VOTES


@dataclass(frozen=True)
class ReplaySpec:
    strategy: Strategy  # the bot version's strategy
    symbol: str
    timeframe: str
    rules: SymbolRules  # exchange filters, as live paper fills use them
    # Starting capital in quote asset: the paper wallet, and what each buy asks to spend
    # (a subscription whose quote_amount is its whole wallet). Fees are Binance's rate, as
    # live paper fills charge them (app.trading.fills).
    quote_amount: Decimal
    slippage: Decimal  # as the live paper fill takes it from settings (paper_slippage)
    start: datetime  # first candle open to decide on (UTC)
    end: datetime  # exclusive


@dataclass
class ReplayState:
    """Everything needed to resume after a crash. It is also the replay's Holding: the live
    apply_fill moves its quantity, average cost, realized PnL, wallet and peak."""

    next_index: int  # index into `candles` of the next candle to replay
    quote_balance: Decimal
    quantity: Decimal
    average_cost: Decimal
    realized_pnl: Decimal
    peak_price: Decimal | None  # highest price seen while holding (trailing stop)
    pending: int | None  # index in `decisions` of the order that fills at the next open
    paused: str | None  # why the replayed subscription stopped trading (max drawdown)
    equity_peak: Decimal
    equity: list[list[str]]  # [ISO time, equity]: the start, then every replayed close
    candles_in_position: int
    decisions: list[dict[str, Any]]  # every BUY/SELL decision and what became of its order
    holds: int  # HOLD decisions (counted, not kept)
    trades: list[dict[str, Any]]  # every order attempt, filled or refused, oldest first
    llm_cost_usd: Decimal
    vote_sources: dict[str, int]  # decisions per vote source: recorded, asked, none
    window_mismatches: int  # recorded live decisions left out: they saw other candles

    def to_json(self) -> dict[str, Any]:
        """Only str/int/list/dict/None (and the floats of indicator snapshots, which JSON
        carries exactly); Decimals as strings."""
        data = copy.deepcopy(vars(self))
        for name in (*_DECIMALS, "llm_cost_usd"):
            data[name] = str(data[name])
        data["peak_price"] = None if self.peak_price is None else str(self.peak_price)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReplayState:
        # A run saved before the count existed resumes with the count at 0.
        data = {"window_mismatches": 0, **data}
        values = {f.name: copy.deepcopy(data[f.name]) for f in fields(cls)}
        for name in (*_DECIMALS, "llm_cost_usd"):
            values[name] = Decimal(values[name])
        if values["peak_price"] is not None:
            values["peak_price"] = Decimal(values["peak_price"])
        return cls(**values)

    @classmethod
    def initial(cls, spec: ReplaySpec, candles: Sequence[Candle]) -> ReplayState:
        """Flat, with the whole capital in the wallet, at the first candle opening at or after
        `spec.start`; ValueError when `candles` lacks the warm-up before it."""
        first = _index_at(candles, spec.start)
        if first >= end_index(spec, candles):
            raise ValueError("no candle opens in the backtest's window")
        warmup = warmup_candles(spec.strategy)
        if first < warmup:
            raise ValueError(f"{warmup} candles are needed before the start, {first} given")
        return cls(
            next_index=first,
            quote_balance=spec.quote_amount,
            quantity=Decimal(0),
            average_cost=Decimal(0),
            realized_pnl=Decimal(0),
            peak_price=None,
            pending=None,
            paused=None,
            equity_peak=spec.quote_amount,
            equity=[[candles[first].open_time.isoformat(), str(spec.quote_amount)]],
            candles_in_position=0,
            decisions=[],
            holds=0,
            trades=[],
            llm_cost_usd=Decimal(0),
            vote_sources={"recorded": 0, "asked": 0, "none": 0},
            window_mismatches=0,
        )


def warmup_candles(strategy: Strategy) -> int:
    """Closed candles needed before `start`: the first decision reads the same number of
    candles as live (`history_needed`), itself the last of them."""
    return history_needed(strategy) - 1


def _index_at(candles: Sequence[Candle], when: datetime) -> int:
    """The index of the first candle opening at or after `when`."""
    return bisect_left(candles, when, key=lambda c: c.open_time)


def end_index(spec: ReplaySpec, candles: Sequence[Candle]) -> int:
    """One past the last candle that opens before `spec.end`: `until_index` of a whole run."""
    return _index_at(candles, spec.end)


async def advance(
    spec: ReplaySpec,
    candles: Sequence[Candle],
    state: ReplayState,
    votes: VoteSource,
    *,
    until_index: int,
) -> ReplayState:
    """Replays candles[state.next_index:until_index]; `candles` holds every closed candle from
    start - warmup to end, oldest first. The decision at index i sees candles[:i+1] only
    (point in time); its order fills at candles[i+1].open; exits are checked on each candle's
    high/low (pessimistic when both stop and take-profit are touched).

    Returns the advanced state; `state` itself is left as it was, so a chunk that fails
    half-way leaves nothing half-done. `until_index` is capped at end_index()."""
    stop = min(until_index, end_index(spec, candles))
    replay = _Replay(spec, candles, ReplayState.from_json(state.to_json()), state.next_index, stop)
    for index in range(state.next_index, stop):
        await replay.candle(index, votes)
    return replay.state


class _Replay:
    def __init__(
        self,
        spec: ReplaySpec,
        candles: Sequence[Candle],
        state: ReplayState,
        first: int,
        stop: int,
    ) -> None:
        self.spec = spec
        self.candles = candles
        self.state = state
        self.limits = spec.strategy.risk
        self.history = history_needed(spec.strategy)
        self.step = timedelta(milliseconds=interval_ms(spec.timeframe))
        # Every window this chunk reads, converted for TA-Lib once rather than per decision.
        self.series_start = max(0, first + 1 - self.history)
        self.series = Series.of(candles[self.series_start : stop])

    async def candle(self, index: int, votes: VoteSource) -> None:
        candle = self.candles[index]
        if self.state.pending is not None:
            self._execute(index, self.state.decisions[self.state.pending])
            self.state.pending = None
        if self.state.paused is None:  # live protects active subscriptions only
            self._protect(index, candle)
        self._mark(candle)
        await self._decide(index, votes)
        self.state.next_index = index + 1

    def _execute(self, index: int, decision: dict[str, Any]) -> None:
        """What the live execute job does for one subscription, at the next open."""
        state, rules = self.state, self.spec.rules
        price, now = self.candles[index].open, self.candles[index].open_time
        side = Side(decision["action"])
        if state.paused is not None:
            decision["outcome"] = f"not sent: the subscription is paused ({state.paused})"
            return
        if side is Side.SELL and rules.is_dust(state.quantity, price):
            decision["outcome"] = "nothing to sell"
            return
        verdict = risk.verdict(
            self.limits,
            side,
            price,
            self.spec.quote_amount,
            self._filled_since(risk.start_of_day(now)),
            self._buy_facts() if side is Side.BUY else None,
            self.spec.quote_amount,
            now,
        )
        if not verdict.allowed:
            if verdict.pause_subscription:
                state.paused = verdict.reason
            decision["outcome"] = "refused"
            decision["trade"] = self._refused(index, side, f"risk: {verdict.reason}")
            return
        try:
            if side is Side.BUY:
                budget = min(self.spec.quote_amount, state.quote_balance)
                quantity = buy_quantity(budget, price, self.spec.slippage, rules)
            else:
                quantity = rules.size_market_sell(state.quantity, price)
        except ExchangeError as exc:  # sizing refuses before the exchange would
            decision["outcome"] = "refused"
            decision["trade"] = self._refused(index, side, str(exc))
            return
        decision["outcome"] = "filled"
        decision["trade"] = self._fill(index, side, quantity, price, f"decision {side.value}")

    def _protect(self, index: int, candle: Candle) -> None:
        """The live protective exits over one candle: its open is the first price seen, its
        low and high the extremes; the peak that sets the trailing stop is the one known
        before the candle's own high, and a stop is taken before a take-profit."""
        state, rules = self.state, self.spec.rules
        if rules.is_dust(state.quantity, candle.open):
            return
        peak = max(state.peak_price or candle.open, candle.open)
        state.peak_price = peak
        levels = risk.exit_levels(self.limits, state.average_cost, peak)
        stops = [level for level in (levels.stop_loss, levels.trailing_stop) if level is not None]
        price = None
        if stops and candle.low <= max(stops):
            price = min(candle.open, max(stops))  # a gap below the stop sells at the open
        elif levels.take_profit is not None and candle.high >= levels.take_profit:
            price = max(candle.open, levels.take_profit)
        if price is None or rules.is_dust(state.quantity, price):
            state.peak_price = max(peak, candle.high)
            return
        exit = risk.exit_reason(self.limits, state.average_cost, peak, price)
        assert exit is not None
        # Not dust at this price, so the whole holding sells within the filters.
        quantity = rules.size_market_sell(state.quantity, price)
        self._fill(index, Side.SELL, quantity, price, exit.reason)

    def _mark(self, candle: Candle) -> None:
        state = self.state
        equity = state.quote_balance + state.quantity * candle.close
        state.equity.append([(candle.open_time + self.step).isoformat(), str(equity)])
        state.equity_peak = max(state.equity_peak, equity)
        if not self.spec.rules.is_dust(state.quantity, candle.close):
            state.candles_in_position += 1

    async def _decide(self, index: int, votes: VoteSource) -> None:
        """The live decision's pipeline on the live decision's window of closed candles."""
        state, strategy = self.state, self.spec.strategy
        start, stop = index + 1 - self.history, index + 1
        window = self.candles[start:stop]
        candle_open = self.candles[index].open_time
        indicators = series_score(
            self.series.window(start - self.series_start, stop - self.series_start),
            strategy.indicators,
        )
        panel = await votes.votes(candle_open, indicators.snapshot, window)
        outcome = apply_rule(
            panel.rule_version, panel.ensemble or strategy.ensemble, indicators.score, panel.ballots
        )
        state.llm_cost_usd += panel.cost_usd
        state.vote_sources[panel.source] += 1
        state.window_mismatches += panel.other_candles
        if outcome.action is Action.HOLD:
            state.holds += 1
            return
        state.decisions.append(
            {
                "index": index,
                "time": candle_open.isoformat(),
                "action": outcome.action.value,
                "indicators": indicators.snapshot,
                "indicator_score": str(indicators.score),
                "score": str(outcome.score),
                "votes": _votes_shown(panel),
                "votes_source": panel.source,
                "live_decision_id": panel.live_decision_id,
                "rule_version": panel.rule_version,
                "reason": "; ".join(r for r in (panel.reason, outcome.reason) if r) or None,
                "outcome": None,
                "trade": None,
            }
        )
        state.pending = len(state.decisions) - 1

    def _filled_since(self, since: datetime) -> list[Decimal | None]:
        """Realized PnL of each trade filled since `since`, as live counts a day's trades."""
        found: list[Decimal | None] = []
        for trade in reversed(self.state.trades):
            if datetime.fromisoformat(trade["time"]) < since:
                break
            if trade["status"] == "filled":
                pnl = trade["realized_pnl"]
                found.append(None if pnl is None else Decimal(pnl))
        return found

    def _buy_facts(self) -> risk.BuyFacts:
        state = self.state
        sells = (
            t for t in reversed(state.trades) if t["status"] == "filled" and t["side"] == "SELL"
        )
        last = next(sells, None)
        last_sale = (
            None
            if last is None
            else risk.Sale(Decimal(last["realized_pnl"]), datetime.fromisoformat(last["time"]))
        )
        # Only the peak and the latest equity point move the drawdown check.
        equity = [state.equity_peak, Decimal(state.equity[-1][1])]
        return risk.BuyFacts(state.quantity, last_sale, equity)

    def _fill(self, index: int, side: Side, quantity: Decimal, price: Decimal, reason: str) -> int:
        state, rules = self.state, self.spec.rules
        fill = paper_fill(side, quantity, price, self.spec.slippage, rules)
        realized = apply_fill(state, side, fill, rules)
        return self._record(
            {
                "status": "filled",
                "index": index,
                "time": self.candles[index].open_time.isoformat(),
                "side": side.value,
                "reason": reason,
                "price": str(fill.price),
                "quantity": str(fill.quantity),
                "quote_quantity": str(fill.quote_quantity),
                "fee": str(fill.fee),
                "fee_asset": fill.fee_asset,
                "fee_quote": str(_fee_in_quote(fill, rules)),
                "realized_pnl": None if realized is None else str(realized),
            }
        )

    def _refused(self, index: int, side: Side, reason: str) -> int:
        return self._record(
            {
                "status": "refused",
                "index": index,
                "time": self.candles[index].open_time.isoformat(),
                "side": side.value,
                "reason": reason,
            }
        )

    def _record(self, trade: dict[str, Any]) -> int:
        self.state.trades.append(trade)
        return len(self.state.trades) - 1


def _votes_shown(panel: CandleVotes) -> list[dict[str, Any]]:
    provenance = panel.provenance or [{} for _ in panel.ballots]
    return [
        {
            **source,
            # One spelling whatever the database gave back (votes recorded on MariaDB or
            # SQLite), as the chain spells them.
            "weight": decimal_text(b.weight),
            "action": b.action.value if b.action else None,
            "confidence": decimal_text(b.confidence) if b.action else None,
        }
        for b, source in zip(panel.ballots, provenance, strict=True)
    ]


def _fee_in_quote(fill: Fill, rules: SymbolRules) -> Decimal:
    """A buy's fee is taken in the base asset: valued at the fill's price."""
    if fill.fee_asset == rules.base_asset:
        return (fill.fee * fill.price).quantize(metrics.MONEY_PLACES)
    return fill.fee


def result(spec: ReplaySpec, candles: Sequence[Candle], state: ReplayState) -> dict[str, Any]:
    """The finished backtest as JSON-ready data, deterministic (same inputs -> byte-identical when
    dumped with sort_keys): metrics (total return, buy-and-hold return, max drawdown, Sharpe and
    Sortino with stated annualisation, win rate, profit factor, trades, exposure, fees, LLM cost,
    LLM coverage), the equity curve, every trade with the decision (index, time, action,
    indicator snapshot, votes, reason) that caused it."""
    first = _index_at(candles, spec.start)
    replayed = state.next_index - first
    decisions = copy.deepcopy(state.decisions)
    if state.pending is not None:
        decisions[state.pending]["outcome"] = "not sent: the window ended before the next open"
    caused_by = {d["trade"]: d for d in decisions if d["trade"] is not None}
    trades = [{**t, "decision": caused_by.get(n)} for n, t in enumerate(state.trades)]
    filled = [t for t in state.trades if t["status"] == "filled"]
    summary = metrics.summary(
        metrics.Inputs(
            timeframe=spec.timeframe,
            capital=spec.quote_amount,
            equity=[Decimal(e) for _, e in state.equity],
            first_open=candles[first].open,
            last_close=candles[state.next_index - 1].close if replayed else candles[first].open,
            closed_pnls=[Decimal(t["realized_pnl"]) for t in filled if t["side"] == "SELL"],
            trades=len(filled),
            fees_quote=sum((Decimal(t["fee_quote"]) for t in filled), Decimal(0)),
            llm_cost_usd=state.llm_cost_usd,
            candles_in_position=state.candles_in_position,
            candles=replayed,
        )
    )
    decided = state.holds + len(state.decisions)
    return {
        "symbol": spec.symbol,
        "timeframe": spec.timeframe,
        "start": spec.start.isoformat(),
        "end": spec.end.isoformat(),
        "quote_amount": str(spec.quote_amount),
        "rule_version": RULE_VERSION,
        "complete": state.next_index >= end_index(spec, candles),
        "metrics": summary,
        "llm": {
            "cost_usd": metrics.text(state.llm_cost_usd),
            "decisions": decided,
            "by_source": dict(sorted(state.vote_sources.items())),
            "window_mismatches": state.window_mismatches,
            # The share of decisions that had LLM votes, recorded or asked.
            "coverage": metrics.text(
                metrics.ratio(
                    Decimal(state.vote_sources["recorded"] + state.vote_sources["asked"]),
                    Decimal(decided),
                )
            ),
        },
        "paused": state.paused,
        "decisions": {"buy_or_sell": len(state.decisions), "hold": state.holds},
        "equity": state.equity,
        "trades": trades,
    }
