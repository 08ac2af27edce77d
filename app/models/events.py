"""The event outbox: one row per fact, written in the transaction that made it happen, the
counter that gives committed events their place in the feed, and the tickets that open a live
stream of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, utcnow
from app.models.base import ID_LENGTH, Base, IdMixin


class Event(IdMixin, Base):
    """A fact, never changed after commit, except that the sequencer sets `seq` once.

    `seq` orders the feed. It is not given at insert: a transaction that inserted first may
    commit last, and a reader ordering by insertion would skip it. The sequencer numbers only
    committed rows, one run at a time, so the numbered rows are always a prefix of `seq`.
    """

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_user_id_seq", "user_id", "seq"),
        Index("ix_events_marketplace_id_seq", "marketplace_id", "seq"),
        # One renter's feed: its marketplace and principal, in `seq` order.
        Index("ix_events_marketplace_id_principal_seq", "marketplace_id", "principal", "seq"),
        Index("ix_events_bot_id_type_seq", "bot_id", "type", "seq"),
    )

    seq: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    type: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The renter the event concerns: erasure and a deleted user take its events with them.
    user_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE")
    )
    principal: Mapped[str | None] = mapped_column(String(64))
    # The marketplace whose keys read it: the renter's, or the one a notice is for. A plain id
    # like the others below: the marketplace's deletion takes its renters, and their events.
    marketplace_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    # Plain ids, not foreign keys: an event outlives what it describes, as history.
    subscription_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    bot_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class EventSequence(Base):
    """Positions in `seq`, one row each: the last `seq` given (locking it serialises the
    sequencer's runs), and the last one the webhooks' dispatcher matched."""

    __tablename__ = "event_sequence"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_seq: Mapped[int] = mapped_column(BigInteger)


class StreamTicket(IdMixin, Base):
    """A single-use ticket a marketplace key gets for one renter's browser to open the live
    stream. Only the ticket's SHA-256 is kept: a copy of this table opens no stream."""

    __tablename__ = "stream_tickets"

    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("api_keys.id", ondelete="CASCADE")
    )
    principal: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
