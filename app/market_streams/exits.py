"""Open positions' exit levels per symbol, sorted, so a price update touches only the
positions it crosses: a stop (stop-loss, trailing stop) is crossed by a price at or below
it, a take-profit by one at or above it. Loaded from the database once and kept current one
position at a time (`put`, `remove`: app/market_streams/flows.py follows the position
events); a position it finds crossed leaves the index (its exit job is on its way, and the
executor sends a position's exit once however often asked) until it is read again.

A trailing stop's level starts at the one of its position's stored peak and follows the
symbol's streamed prices: a price above a position's peak becomes its peak and raises its
level, so a price falling from a high is checked against the level of that high at once.
The stream process writes the highs as the positions' peaks (on every refresh, and before an
exit job), so the workers' exit check agrees with the index.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import NamedTuple

from app.trading.risk import ExitLevels


class HeldPosition(NamedTuple):
    """What the index needs of one open position."""

    subscription_id: str
    symbol: str
    levels: ExitLevels
    trailing_pct: Decimal | None
    peak: Decimal  # the highest price since the entry: its trailing stop's base


class Trailing(NamedTuple):
    pct: Decimal
    peak: Decimal
    level: Decimal  # peak x (1 - pct / 100), as it stands in `stops`


def _discard(levels: list[tuple[Decimal, str]], entry: tuple[Decimal, str]) -> None:
    at = bisect.bisect_left(levels, entry)
    if at < len(levels) and levels[at] == entry:
        del levels[at]


@dataclass
class SymbolExits:
    stops: list[tuple[Decimal, str]] = field(default_factory=list)  # ascending
    takes: list[tuple[Decimal, str]] = field(default_factory=list)  # ascending
    # Each position's own levels, to take it out of the sorted lists.
    stop_losses: dict[str, Decimal] = field(default_factory=dict)
    take_profits: dict[str, Decimal] = field(default_factory=dict)
    trailing: dict[str, Trailing] = field(default_factory=dict)
    # The lowest peak of a trailing stop: only a price above it raises one, so most updates
    # skip the trailing stops without looking at them.
    lowest_peak: Decimal | None = None

    def add(self, held: HeldPosition) -> None:
        sub, levels = held.subscription_id, held.levels
        if levels.stop_loss is not None:
            self.stop_losses[sub] = levels.stop_loss
            bisect.insort(self.stops, (levels.stop_loss, sub))
        if levels.trailing_stop is not None:
            assert held.trailing_pct, "a trailing stop has its percent"
            self.trailing[sub] = Trailing(held.trailing_pct, held.peak, levels.trailing_stop)
            bisect.insort(self.stops, (levels.trailing_stop, sub))
            if self.lowest_peak is None or held.peak < self.lowest_peak:
                self.lowest_peak = held.peak
        if levels.take_profit is not None:
            self.take_profits[sub] = levels.take_profit
            bisect.insort(self.takes, (levels.take_profit, sub))

    def remove(self, sub: str) -> None:
        stop_loss = self.stop_losses.pop(sub, None)
        if stop_loss is not None:
            _discard(self.stops, (stop_loss, sub))
        trailing = self.trailing.pop(sub, None)
        if trailing is not None:
            _discard(self.stops, (trailing.level, sub))
        take_profit = self.take_profits.pop(sub, None)
        if take_profit is not None:
            _discard(self.takes, (take_profit, sub))

    def raise_trailing(self, price: Decimal) -> None:
        """A price above trailing stops' peaks becomes their peak and raises their levels."""
        if self.lowest_peak is None or price <= self.lowest_peak:
            return
        lowest = None
        for sub, trailing in self.trailing.items():
            if price > trailing.peak:
                raised = trailing._replace(peak=price, level=price * (1 - trailing.pct / 100))
                _discard(self.stops, (trailing.level, sub))
                bisect.insort(self.stops, (raised.level, sub))
                self.trailing[sub] = trailing = raised
            if lowest is None or trailing.peak < lowest:
                lowest = trailing.peak
        self.lowest_peak = lowest

    def crossed(self, price: Decimal) -> set[str]:
        # Stops at or above the price are crossed: the tail of the ascending list.
        first_stop = bisect.bisect_left(self.stops, (price, ""))
        # Take-profits at or below it: the head.
        last_take = bisect.bisect_right(self.takes, (price, "\uffff"))
        crossed = {sub for _, sub in self.stops[first_stop:]}
        crossed |= {sub for _, sub in self.takes[:last_take]}
        for sub in crossed:  # a position with two levels crossed one: the other goes too
            self.remove(sub)
        return crossed


class ExitIndex:
    def __init__(self, positions: Iterable[HeldPosition] = ()) -> None:
        self._symbols: dict[str, SymbolExits] = {}
        self._symbol_of: dict[str, str] = {}
        for held in positions:
            self.put(held)

    def __contains__(self, sub_id: object) -> bool:
        return sub_id in self._symbol_of

    def __len__(self) -> int:
        return len(self._symbol_of)

    def put(self, held: HeldPosition) -> None:
        """The position's levels, replacing the ones it had."""
        self.remove(held.subscription_id)
        self._symbols.setdefault(held.symbol, SymbolExits()).add(held)
        self._symbol_of[held.subscription_id] = held.symbol

    def remove(self, sub_id: str) -> None:
        """The position's levels out of the index (none there: nothing to do)."""
        symbol = self._symbol_of.pop(sub_id, None)
        if symbol is not None:
            self._symbols[symbol].remove(sub_id)

    @property
    def trailing_symbols(self) -> set[str]:
        """The symbols with open positions that have a trailing stop."""
        return {symbol for symbol, exits in self._symbols.items() if exits.trailing}

    def crossed(self, symbol: str, price: Decimal) -> set[str]:
        """The subscriptions whose exit `price` crosses, trailing stops raised to it first;
        they leave the index."""
        exits = self._symbols.get(symbol)
        if exits is None:
            return set()
        exits.raise_trailing(price)
        crossed = exits.crossed(price)
        for sub in crossed:
            del self._symbol_of[sub]
        return crossed
