"""Binance's stream names and what their frames mean to us."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

KLINE_MARK = "@kline_"
PRICE_MARK = "@bookTicker"


def kline_stream(symbol: str, timeframe: str) -> str:
    return f"{symbol.lower()}{KLINE_MARK}{timeframe}"


def price_stream(symbol: str) -> str:
    # bookTicker: every change of the touch, at once; a long position sells at the bid.
    return f"{symbol.lower()}{PRICE_MARK}"


def market_of(stream: str) -> tuple[str, str] | None:
    """(SYMBOL, timeframe) of a kline stream's name; None for any other stream."""
    symbol, mark, timeframe = stream.partition(KLINE_MARK)
    return (symbol.upper(), timeframe) if mark else None


@dataclass(frozen=True)
class KlineClosed:
    symbol: str
    timeframe: str
    close_at: datetime  # the candle's close, the "as of" of its decision


@dataclass(frozen=True)
class PriceUpdate:
    symbol: str
    price: Decimal


def read_payload(data: Any) -> tuple[KlineClosed | PriceUpdate, ...]:
    """What a stream's payload tells: a candle closed, a new price, both, or nothing we act on.

    Prices come from the forming candle's updates of the traded symbols (the price orders are
    sized at) and from bookTicker's bid for the held ones (the price a position sells at);
    never from a closing update, which arrives beside the next candle's and is older. A
    forming candle's update also tells that the candle before it has closed (at its open):
    a closing update missed (a paused stream, a lost frame) is made up by the next one."""
    if not isinstance(data, dict):
        return ()
    if data.get("e") == "kline":
        kline = data["k"]
        symbol, timeframe = str(kline["s"]), str(kline["i"])
        if not kline["x"]:  # the forming candle: its last trade is the symbol's price
            opened = datetime.fromtimestamp(int(kline["t"]) / 1000, UTC)
            return (
                PriceUpdate(symbol, Decimal(str(kline["c"]))),
                KlineClosed(symbol, timeframe, opened),
            )
        # T is the candle's last millisecond; it closes one millisecond later.
        close = datetime.fromtimestamp((int(kline["T"]) + 1) / 1000, UTC)
        return (KlineClosed(symbol, timeframe, close),)
    if "u" in data and "b" in data:  # bookTicker carries no event type
        return (PriceUpdate(str(data["s"]), Decimal(str(data["b"]))),)
    return ()
