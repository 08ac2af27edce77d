"""Open positions' exit levels per symbol, sorted, so a price update touches only the
positions it crosses: a stop (stop-loss, trailing stop) is crossed by a price at or below
it, a take-profit by one at or above it. Rebuilt from the database on every refresh of the
stream process; a position it finds crossed leaves the index until the next rebuild (its
exit job is on its way, and the executor sends a position's exit once however often asked).

A trailing stop's level starts at the one of its position's stored peak and follows the
symbol's streamed prices: each new high since the rebuild raises the trailing stops below
it, so a price falling from a high is checked against the level of that high at once. The
stream process writes the highs as the positions' peaks (on every refresh, and before an
exit job), so the workers' exit check agrees with the index.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from app.trading.risk import ExitLevels


@dataclass
class SymbolExits:
    stops: list[tuple[Decimal, str]] = field(default_factory=list)  # ascending
    takes: list[tuple[Decimal, str]] = field(default_factory=list)  # ascending
    # Trailing stops: subscription -> (percent, the level it has in `stops`).
    trailing: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    high: Decimal = Decimal(0)  # the highest price seen since the rebuild

    def raise_high(self, price: Decimal) -> None:
        """A new high raises the trailing stops whose level it lifts."""
        if price <= self.high:
            return
        self.high = price
        for sub, (pct, level) in list(self.trailing.items()):
            raised = price * (1 - pct / 100)
            if raised > level:
                self.stops.remove((level, sub))
                bisect.insort(self.stops, (raised, sub))
                self.trailing[sub] = (pct, raised)

    def crossed(self, price: Decimal) -> set[str]:
        # Stops at or above the price are crossed: the tail of the ascending list.
        first_stop = bisect.bisect_left(self.stops, (price, ""))
        # Take-profits at or below it: the head.
        last_take = bisect.bisect_right(self.takes, (price, "\uffff"))
        crossed = {sub for _, sub in self.stops[first_stop:]}
        crossed |= {sub for _, sub in self.takes[:last_take]}
        del self.stops[first_stop:]
        del self.takes[:last_take]
        for sub in crossed:
            self.trailing.pop(sub, None)
        return crossed


class ExitIndex:
    def __init__(self) -> None:
        self._symbols: dict[str, SymbolExits] = {}

    def rebuild(self, positions: Iterable[tuple[str, str, ExitLevels, Decimal | None]]) -> None:
        """(subscription, symbol, levels, trailing stop percent) of every open position."""
        symbols: dict[str, SymbolExits] = {}
        for sub_id, symbol, levels, trailing_pct in positions:
            exits = symbols.setdefault(symbol, SymbolExits())
            for stop in (levels.stop_loss, levels.trailing_stop):
                if stop is not None:
                    exits.stops.append((stop, sub_id))
            if levels.trailing_stop is not None and trailing_pct:
                exits.trailing[sub_id] = (trailing_pct, levels.trailing_stop)
            if levels.take_profit is not None:
                exits.takes.append((levels.take_profit, sub_id))
        for exits in symbols.values():
            exits.stops.sort()
            exits.takes.sort()
        self._symbols = symbols

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
        exits.raise_high(price)
        crossed = exits.crossed(price)
        if crossed:  # a position with two levels crossed one: the other goes too
            exits.stops = [(level, sub) for level, sub in exits.stops if sub not in crossed]
            exits.takes = [(level, sub) for level, sub in exits.takes if sub not in crossed]
        return crossed
