"""Console sessions: what a developer's or admin's browser holds instead of their API key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime
from app.models.base import ID_LENGTH, Base, CreatedMixin, IdMixin


class ConsoleSession(IdMixin, CreatedMixin, Base):
    """A signed-in browser. Only the session token's SHA-256 is kept: a copy of this table
    signs nobody in. It lives as long as its API key does, and at most until `expires_at`."""

    __tablename__ = "console_sessions"

    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    api_key_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
