"""What the engine records: shared decisions with their votes, and per-subscription results."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Money, UTCDateTime, case_sensitive_string
from app.models.base import ID_LENGTH, Base, CreatedMixin, IdMixin, TimestampMixin


class Decision(IdMixin, CreatedMixin, Base):
    """One per (bot version, symbol, timeframe, candle): shared by every renter of that bot."""

    __tablename__ = "decisions"
    __table_args__ = (
        UniqueConstraint("bot_version_id", "symbol", "timeframe", "candle_open_at"),
        # The reconciler's scan for recent decisions whose orders may have been lost.
        Index("ix_decisions_created_at", "created_at"),
    )

    bot_version_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bot_versions.id", ondelete="RESTRICT")
    )
    symbol: Mapped[str] = mapped_column(String(20))
    timeframe: Mapped[str] = mapped_column(String(4))
    candle_open_at: Mapped[datetime] = mapped_column(UTCDateTime)
    indicators: Mapped[dict[str, Any]] = mapped_column(JSON)
    indicator_score: Mapped[Decimal] = mapped_column(Money)
    combined_score: Mapped[Decimal] = mapped_column(Money)
    action: Mapped[str] = mapped_column(String(8))  # BUY | SELL | HOLD
    rule_version: Mapped[str] = mapped_column(String(32))
    rule_params: Mapped[dict[str, Any]] = mapped_column(JSON)
    # Why the LLM panel did not decide, when it did not (budget spent, quorum missed, ...).
    fallback_reason: Mapped[str | None] = mapped_column(String(500))
    # The candle window it saw: `candle_count` consecutive candles from the first's open time
    # to the decided one, and the SHA-256 of their canonical form
    # (app/verification/canonical.py). None on decisions made before windows were recorded.
    candle_count: Mapped[int | None] = mapped_column(Integer)
    candles_first_open_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    candles_sha256: Mapped[str | None] = mapped_column(String(64))


class DecisionPrompt(Base):
    """The prompt a decision's voters were sent, kept PROMPT_RETENTION_DAYS; each vote keeps
    its SHA-256 for good."""

    __tablename__ = "decision_prompts"

    decision_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("decisions.id", ondelete="CASCADE"), primary_key=True
    )
    sha256: Mapped[str] = mapped_column(String(64))
    system: Mapped[str] = mapped_column(Text)
    user: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class DecisionClaim(IdMixin, CreatedMixin, Base):
    """Who is making a decision, until when, and the LLM budget its round has reserved.

    One row per decision key while it is being made, deleted in the transaction that stores
    the decision. `attempt` is the fencing token: a takeover of an expired claim changes it,
    so a paused former owner cannot store its round.
    """

    __tablename__ = "decision_claims"
    __table_args__ = (
        # Named here: the conventional name would pass MySQL's 64-character limit.
        UniqueConstraint(
            "bot_version_id", "symbol", "timeframe", "candle_open_at", name="uq_decision_claims_key"
        ),
    )

    bot_version_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bot_versions.id", ondelete="CASCADE")
    )
    symbol: Mapped[str] = mapped_column(String(20))
    timeframe: Mapped[str] = mapped_column(String(4))
    candle_open_at: Mapped[datetime] = mapped_column(UTCDateTime)
    attempt: Mapped[int] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # What the round may cost at most; counted against the budget until the claim expires.
    reserved_usd: Mapped[Decimal] = mapped_column(Money)


class LlmVote(IdMixin, Base):
    __tablename__ = "llm_votes"
    __table_args__ = (
        # A decision's votes; and the sums of LLM spend, which read these columns only.
        Index("ix_llm_votes_decision_id_provider_cost", "decision_id", "provider", "cost_usd"),
    )

    decision_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("decisions.id", ondelete="CASCADE")
    )
    # The voter's place on the bot's panel: the order a decision lists its votes in.
    seat: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    provider: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(100))
    weight: Mapped[Decimal] = mapped_column(Money)
    action: Mapped[str | None] = mapped_column(String(8))
    confidence: Mapped[Decimal | None] = mapped_column(Money)
    reasoning: Mapped[str | None] = mapped_column(Text)
    cited_indicators: Mapped[list[str]] = mapped_column(JSON, default=list)
    abstain_reason: Mapped[str | None] = mapped_column(String(500))
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # SHA-256 of the prompt it was sent (None: not asked), and what the model answered, as text.
    prompt_sha256: Mapped[str | None] = mapped_column(String(64))
    response_text: Mapped[str | None] = mapped_column(Text)


class Trade(IdMixin, TimestampMixin, Base):
    """An order attempt, written `pending` before it is sent so a crash leaves a trace."""

    __tablename__ = "trades"
    __table_args__ = (
        # At most one order per subscription and decision, whatever retries or crashes do.
        UniqueConstraint("subscription_id", "decision_id"),
        # The reconciler's scan: unresolved attempts whose lease has run out.
        Index("ix_trades_status_lease_until", "status", "lease_until"),
    )

    # Indexed by the unique constraint below, whose first column it is.
    subscription_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    # Protective exits (stop-loss, take-profit) have no decision.
    decision_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("decisions.id", ondelete="RESTRICT"), index=True
    )
    client_order_id: Mapped[str] = mapped_column(case_sensitive_string(36), unique=True)
    exchange_order_id: Mapped[str | None] = mapped_column(String(64))
    mode: Mapped[str] = mapped_column(String(8))
    symbol: Mapped[str] = mapped_column(String(20))
    side: Mapped[str] = mapped_column(String(4))  # BUY | SELL
    # pending | filled | rejected | unknown | refused
    status: Mapped[str] = mapped_column(String(16))
    # Ownership of the attempt. Every claim increments `fence`; only the holder of the current
    # fence may send the order or record its outcome, each checked by one conditional UPDATE.
    # Nobody may take the attempt over before `lease_until`.
    fence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An order for a decision is worthless once the market has moved on: never sent after this.
    send_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Committed just before the request leaves: from then on, a taker asks the exchange first.
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    requested_quote: Mapped[Decimal | None] = mapped_column(Money)
    requested_quantity: Mapped[Decimal | None] = mapped_column(Money)
    quantity: Mapped[Decimal | None] = mapped_column(Money)
    price: Mapped[Decimal | None] = mapped_column(Money)
    quote_quantity: Mapped[Decimal | None] = mapped_column(Money)
    fee: Mapped[Decimal | None] = mapped_column(Money)
    fee_asset: Mapped[str | None] = mapped_column(String(16))
    # Set on sells: what the sale gained or lost against the position's average cost.
    realized_pnl: Mapped[Decimal | None] = mapped_column(Money)
    reason: Mapped[str | None] = mapped_column(Text)


class Position(IdMixin, TimestampMixin, Base):
    __tablename__ = "positions"

    subscription_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("subscriptions.id", ondelete="CASCADE"), unique=True
    )
    symbol: Mapped[str] = mapped_column(String(20))
    quantity: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Average cost per unit, fees included.
    average_cost: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    realized_pnl: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Paper mode's virtual quote wallet; unused for testnet and live.
    quote_balance: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    # Highest price since entry, for the trailing stop.
    peak_price: Mapped[Decimal | None] = mapped_column(Money)


class PerformanceLog(IdMixin, Base):
    __tablename__ = "performance_logs"
    __table_args__ = (UniqueConstraint("subscription_id", "recorded_at"),)

    subscription_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("subscriptions.id", ondelete="CASCADE")
    )
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    equity: Mapped[Decimal] = mapped_column(Money)
    realized_pnl: Mapped[Decimal] = mapped_column(Money)
    unrealized_pnl: Mapped[Decimal] = mapped_column(Money)
