"""What the market-stream process shares with the workers without Redis, and its lease."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Money, UTCDateTime
from app.models.base import Base


class LatestPrice(Base):
    """A symbol's latest streamed price (the embedded default's; Redis holds it otherwise)."""

    __tablename__ = "latest_prices"

    symbol: Mapped[str] = mapped_column(String(20), primary_key=True)
    price: Mapped[Decimal] = mapped_column(Money)
    observed_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProcessLease(Base):
    """Who does a one-at-a-time job (the market streams), until when, under which token.

    The token grows by one with every new holder: a holder that was paused past its lease
    finds a larger token and knows it no longer owns the work.
    """

    __tablename__ = "process_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))
    token: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
