"""A renter's subscription: one bot version on one symbol and timeframe, in one mode."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Money, UTCDateTime
from app.models.base import ID_LENGTH, Base, IdMixin, TimestampMixin


class Subscription(IdMixin, TimestampMixin, Base):
    __tablename__ = "subscriptions"
    __table_args__ = (
        # The dispatcher's scan: active subscriptions grouped by what they decide on.
        Index("ix_subscriptions_dispatch", "status", "bot_version_id", "symbol", "timeframe"),
        Index("ix_subscriptions_user_id_id", "user_id", "id"),
        Index("ix_subscriptions_status_ends_at", "status", "ends_at"),
    )

    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE")
    )
    # History must stay explainable: a bot or version with subscriptions cannot be deleted.
    bot_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bots.id", ondelete="RESTRICT"), index=True
    )
    bot_version_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bot_versions.id", ondelete="RESTRICT")
    )
    # Deleting a credential pauses the subscription (service) and the link goes null.
    credential_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("exchange_credentials.id", ondelete="SET NULL"), index=True
    )
    symbol: Mapped[str] = mapped_column(String(20))
    timeframe: Mapped[str] = mapped_column(String(4))
    mode: Mapped[str] = mapped_column(String(8))  # paper | testnet | live
    quote_amount: Mapped[Decimal] = mapped_column(Money)
    risk: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="active")
    status_reason: Mapped[str | None] = mapped_column(String(500))
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
