"""What each market stream of the sandbox sends: Binance's payloads, from the sandbox's market.

Every payload is computed from the same functions as the REST answers (app/sandbox/market.py),
so a stream and REST agree: a kline's closing update carries the REST row of the same open
time, field for field. A feed remembers what its connection was last sent, so each update
tick sends what happened since: a candle's closing update once, then the next candle's;
the tape's trades of every second since the last tick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from app.sandbox.market import INTERVAL_MS, SYMBOLS, Market

DAY_MS = 86_400_000
HOUR_MS = 3_600_000
# A connection that fell behind (a paused symbol, a slow tick) gets at most this many seconds
# of the tape at once, as a client reconnecting would.
MAX_TAPE_CATCH_UP_S = 10
STREAM_KINDS = re.compile(r"^(?P<symbol>[a-z0-9]+)@(?P<kind>kline_(?P<interval>\w+)|\w+)$")


class Feed(Protocol):
    symbol: str

    def updates(self, now_ms: int) -> list[dict[str, Any]]: ...


def kline_payload(market: Market, symbol: str, interval: str, open_ms: int, now_ms: int) -> Any:
    row = market.candle(symbol, interval, open_ms, now_ms)
    close_ms = int(str(row[6]))
    last_ms = min(close_ms, now_ms)
    return {
        "e": "kline",
        "E": now_ms,
        "s": symbol,
        "k": {
            "t": row[0],
            "T": row[6],
            "s": symbol,
            "i": interval,
            "f": -(-open_ms // 1000),  # the tape's first trade in the candle: its first second
            "L": last_ms // 1000,
            "o": row[1],
            "c": row[4],
            "h": row[2],
            "l": row[3],
            "v": row[5],
            "n": row[8],
            "x": open_ms + INTERVAL_MS[interval] <= now_ms,
            "q": row[7],
            "V": row[9],
            "Q": row[10],
            "B": row[11],
        },
    }


@dataclass
class KlineFeed:
    market: Market
    symbol: str
    interval: str
    last_open_ms: int | None = None

    def updates(self, now_ms: int) -> list[dict[str, Any]]:
        length = INTERVAL_MS[self.interval]
        open_ms = now_ms // length * length
        sent = []
        if self.last_open_ms is not None and self.last_open_ms < open_ms:
            # The candle this connection last saw has closed: its closing update (x true).
            sent.append(
                kline_payload(self.market, self.symbol, self.interval, self.last_open_ms, now_ms)
            )
        sent.append(kline_payload(self.market, self.symbol, self.interval, open_ms, now_ms))
        self.last_open_ms = open_ms
        return sent


@dataclass
class TradeFeed:
    market: Market
    symbol: str
    last_second: int | None = None

    def updates(self, now_ms: int) -> list[dict[str, Any]]:
        now_s = now_ms // 1000
        first = now_s if self.last_second is None else self.last_second + 1
        self.last_second = now_s
        sent = []
        for second in range(max(first, now_s - MAX_TAPE_CATCH_UP_S + 1), now_s + 1):
            trade = self.market.trade(self.symbol, second)
            sent.append(
                {
                    "e": "trade",
                    "E": now_ms,
                    "s": self.symbol,
                    "t": trade.trade_id,
                    "p": str(trade.price),
                    "q": str(trade.quantity),
                    "T": trade.ms,
                    "m": trade.buyer_is_maker,
                    "M": True,
                }
            )
        return sent


@dataclass
class BookTickerFeed:
    """The touch around the sandbox's price: it fills both sides at that price, the bid; the
    ask is a tick above it."""

    market: Market
    symbol: str

    def updates(self, now_ms: int) -> list[dict[str, Any]]:
        spec = SYMBOLS[self.symbol]
        price = self.market.price(self.symbol, now_ms)
        trade = self.market.trade(self.symbol, now_ms // 1000)
        return [
            {
                "u": now_ms,
                "s": self.symbol,
                "b": str(price),
                "B": str(trade.quantity * 3),
                "a": str(price + spec.tick_size),
                "A": str(trade.quantity * 2),
            }
        ]


@dataclass
class MiniTickerFeed:
    """The rolling 24 h: open 24 h ago, the hourly candles since for high, low and volumes."""

    market: Market
    symbol: str

    def updates(self, now_ms: int) -> list[dict[str, Any]]:
        start_ms = now_ms - DAY_MS
        opened = self.market.price(self.symbol, start_ms)
        rows = self.market.klines(self.symbol, "1h", now_ms, start_ms, None, 25)
        return [
            {
                "e": "24hrMiniTicker",
                "E": now_ms,
                "s": self.symbol,
                "c": str(self.market.price(self.symbol, now_ms)),
                "o": str(opened),
                "h": str(max([opened, *(Decimal(str(row[2])) for row in rows)])),
                "l": str(min([opened, *(Decimal(str(row[3])) for row in rows)])),
                "v": str(sum(Decimal(str(row[5])) for row in rows)),
                "q": str(sum(Decimal(str(row[7])) for row in rows)),
            }
        ]


def open_feed(market: Market, stream: str) -> Feed | None:
    """The feed of a well-formed stream name, or None for one the sandbox does not serve (an
    unknown symbol or kind): Binance accepts those too, and never sends anything on them."""
    match = STREAM_KINDS.match(stream)
    symbol = match["symbol"].upper() if match else ""
    if match is None or symbol not in SYMBOLS:
        return None
    kind, interval = match["kind"], match["interval"]
    if interval is not None:
        return KlineFeed(market, symbol, interval) if interval in INTERVAL_MS else None
    feeds = {"trade": TradeFeed, "bookTicker": BookTickerFeed, "miniTicker": MiniTickerFeed}
    feed = feeds.get(kind)
    return feed(market, symbol) if feed is not None else None
