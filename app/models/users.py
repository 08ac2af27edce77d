"""Users (one per ICP principal or per developer) and the API keys that act for them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.dialects.mysql import VARBINARY
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
    # off | optional | required: whether renter requests must carry the canister's signed
    # principal assertion (see app/core/principal_assertions.py).
    assertion_mode: Mapped[str] = mapped_column(String(16), server_default="off")
    # Requests a minute for the whole key; NULL is its scope's default (app/core/ratelimit.py).
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)


class ApiKeyAssertionKey(IdMixin, CreatedMixin, Base):
    """A public key whose signatures prove the principal a marketplace key acts for.

    A key may hold several so the canister's signing key can be rotated without downtime.
    """

    __tablename__ = "api_key_assertion_keys"
    __table_args__ = (UniqueConstraint("api_key_id", "public_key"),)

    api_key_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("api_keys.id", ondelete="CASCADE")
    )
    algorithm: Mapped[str] = mapped_column(String(16))  # ed25519 | secp256k1
    # Raw bytes, so equality is binary on every backend (MariaDB's default collation is not).
    public_key: Mapped[bytes] = mapped_column(LargeBinary(33).with_variant(VARBINARY(33), "mysql"))
