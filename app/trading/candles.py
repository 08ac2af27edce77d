"""Closed candles as exact decimals, parsed from Binance's 12-element kline rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class Candle:
    open_time: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    close_time: datetime

    @classmethod
    def from_kline(cls, row: list[Any]) -> Candle:
        return cls(
            open_time=datetime.fromtimestamp(int(row[0]) / 1000, UTC),
            open=Decimal(row[1]),
            high=Decimal(row[2]),
            low=Decimal(row[3]),
            close=Decimal(row[4]),
            volume=Decimal(row[5]),
            close_time=datetime.fromtimestamp(int(row[6]) / 1000, UTC),
        )
