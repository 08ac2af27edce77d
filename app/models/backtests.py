"""Stored market history, and backtests: a bot version replayed over it, resumable."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Money, UTCDateTime
from app.models.base import ID_LENGTH, Base, IdMixin, TimestampMixin


class Candle(Base):
    """A closed candle, exchange-agnostic; fetched once, then every backtest reads it here."""

    __tablename__ = "candles"

    # The key is the unique (symbol, timeframe, open time), and the index of every range read.
    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    timeframe: Mapped[str] = mapped_column(String(4), primary_key=True)
    open_time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    open: Mapped[Decimal] = mapped_column(Money)
    high: Mapped[Decimal] = mapped_column(Money)
    low: Mapped[Decimal] = mapped_column(Money)
    close: Mapped[Decimal] = mapped_column(Money)
    volume: Mapped[Decimal] = mapped_column(Money)
    close_time: Mapped[datetime] = mapped_column(UTCDateTime)


class SymbolRulesRecord(Base):
    """A symbol's exchange rules (lot, tick, notional) as first fetched for a backtest: a
    rerun reads them here, so it needs no exchange and sizes orders as the first run did."""

    __tablename__ = "symbol_rules"

    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSON)
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Backtest(IdMixin, TimestampMixin, Base):
    """One replay of a bot version over a window, run by a task in chunks.

    The owner is the API key that started it (developer, admin), or the renter a marketplace
    key started it for; neither for an operator's run from the command line. `fence` and
    `lease_until` make a run resumable: each worker that takes the run over increments the
    fence, and only the holder of the current fence may save its progress.
    """

    __tablename__ = "backtests"
    __table_args__ = (
        # The sweep's scan for runs whose worker died, and the budget's scan of a bot's runs.
        Index("ix_backtests_status_lease_until", "status", "lease_until"),
        Index("ix_backtests_bot_id_created_at", "bot_id", "created_at"),
    )

    bot_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bots.id", ondelete="CASCADE")
    )
    bot_version_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bot_versions.id", ondelete="CASCADE")
    )
    bot_version: Mapped[int] = mapped_column(Integer)
    owner_api_key_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    owner_user_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    symbol: Mapped[str] = mapped_column(String(20))
    timeframe: Mapped[str] = mapped_column(String(4))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    quote_amount: Mapped[Decimal] = mapped_column(Money)
    llm: Mapped[str] = mapped_column(String(16))  # recorded | indicators | ask
    max_llm_cost_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Charged to the bot's LLM budget on the day the run was made: the estimate while it
    # may still ask, what it really cost once it ended.
    llm_reserved_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    llm_cost_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # queued | running | succeeded | failed | cancelled
    status: Mapped[str] = mapped_column(String(16), default="queued")
    candles_done: Mapped[int] = mapped_column(Integer, default=0)
    candles_total: Mapped[int] = mapped_column(Integer, default=0)
    fence: Mapped[int] = mapped_column(Integer, default=0)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    state: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(500))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
