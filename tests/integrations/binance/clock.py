"""Skewing the process's clock offset, as a step of this machine's clock would."""

from __future__ import annotations

from dataclasses import replace

from app.integrations.binance.clock import ExchangeClock


def skew(clock: ExchangeClock, ms: int) -> None:
    # The same sync number: the offset is as current as it was, only wrong now.
    clock._offset = replace(clock._offset, ms=clock._offset.ms + ms)
