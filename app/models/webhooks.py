"""Webhook endpoints, the deliveries owed to them (one per endpoint and event, or per replay)
and every attempt at one."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime
from app.models.base import ID_LENGTH, Base, CreatedMixin, IdMixin, TimestampMixin

MAX_URL_LENGTH = 2048
# The `source` of the deliveries the dispatcher makes; a replay's are the replay's id.
DISPATCHED = "dispatch"


class WebhookEndpoint(IdMixin, TimestampMixin, Base):
    """A URL that receives the events its owner could read in the feed.

    The owner is the creating key's scope with, for a developer key, its user (every key of
    that developer manages it), for a marketplace key its marketplace (every key of it does),
    for an admin key the key itself."""

    __tablename__ = "webhook_endpoints"

    url: Mapped[str] = mapped_column(String(MAX_URL_LENGTH))
    # Event types it receives; empty: all it may see.
    types: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str | None] = mapped_column(String(200))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    scope: Mapped[str] = mapped_column(String(16))
    owner_user_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    marketplace_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("marketplaces.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    # Events numbered up to this when it was created are not its own (a replay reaches them).
    after_seq: Mapped[int] = mapped_column(BigInteger)
    # Fernet ciphertexts of `whsec_...`; the previous secret signs too until it expires.
    secret_ciphertext: Mapped[str] = mapped_column(Text)
    previous_secret_ciphertext: Mapped[str | None] = mapped_column(Text)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    fernet_key_id: Mapped[str] = mapped_column(String(64))
    # The first failed attempt since the last success; None while the endpoint answers.
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    disabled_reason: Mapped[str | None] = mapped_column(String(200))


class WebhookDelivery(IdMixin, CreatedMixin, Base):
    """One event owed to one endpoint: pending until a 2xx (delivered) or the retry schedule
    runs out (failed). `source` is "dispatch", or the id of the replay that asked for it again,
    so a replay adds rows where the dispatcher never adds one twice."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("endpoint_id", "event_id", "source"),
        Index("ix_webhook_deliveries_status_next_attempt_at", "status", "next_attempt_at"),
    )

    endpoint_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("webhook_endpoints.id", ondelete="CASCADE")
    )
    # Erasure and retention delete events; what is still owed of them goes too.
    event_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("events.id", ondelete="CASCADE"), index=True
    )
    source: Mapped[str] = mapped_column(String(ID_LENGTH))
    status: Mapped[str] = mapped_column(String(16))  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # A worker's claim: another takes the delivery over only once it has passed (it died).
    lease_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    leased_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebhookAttempt(IdMixin, Base):
    """One POST of a delivery, kept for the deliveries list."""

    __tablename__ = "webhook_attempts"

    delivery_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
