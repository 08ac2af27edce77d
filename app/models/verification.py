"""Each bot's hash chain of decisions: one link per chained decision, and the signed head."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime
from app.models.base import ID_LENGTH, Base


class ChainLink(Base):
    """A decision's place in its bot's chain, written in the transaction that stores the
    decision and never changed. (bot_id, seq) is unique: two writers can never both take a
    place, whatever happens to the head's lock."""

    __tablename__ = "chain_links"
    __table_args__ = (UniqueConstraint("bot_id", "seq"),)

    decision_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("decisions.id", ondelete="RESTRICT"), primary_key=True
    )
    bot_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bots.id", ondelete="RESTRICT")
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class ChainHead(Base):
    """A bot's latest link and its signature, updated with every append. The appender locks
    this row first, so one bot's appends take their places one after the other."""

    __tablename__ = "chain_heads"

    bot_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bots.id", ondelete="RESTRICT"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    key_id: Mapped[str] = mapped_column(String(64))
    signature: Mapped[str] = mapped_column(String(88))  # base64 of the 64-byte signature
