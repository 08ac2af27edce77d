"""Users (one per ICP principal or per developer) and the API keys that act for them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, case_sensitive_string
from app.models.base import ID_LENGTH, Base, CreatedMixin, IdMixin


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"

    # Renters are identified by their principal; developers own keys and bots, not principals.
    principal: Mapped[str | None] = mapped_column(String(64), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # renter | developer
    # Personal fields, blanked by the GDPR erasure.
    display_name: Mapped[str | None] = mapped_column(String(200))
    email: Mapped[str | None] = mapped_column(String(320))
    erased_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ApiKey(IdMixin, CreatedMixin, Base):
    __tablename__ = "api_keys"

    name: Mapped[str] = mapped_column(String(100))
    scope: Mapped[str] = mapped_column(String(16))  # admin | developer | marketplace
    prefix: Mapped[str] = mapped_column(case_sensitive_string(8), unique=True)
    # SHA-256 of the whole token; the token itself is never stored.
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    # Keys outlive nothing they own: deleting a user deletes its keys.
    owner_user_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
