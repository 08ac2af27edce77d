"""Marketplaces, users (a renter per marketplace and ICP principal, or a developer) and the API
keys that act for them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.dialects.mysql import VARBINARY
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, case_sensitive_string
from app.models.base import ID_LENGTH, Base, CreatedMixin, IdMixin


class Marketplace(IdMixin, CreatedMixin, Base):
    """A marketplace whose keys act for its renters, and only for them.

    Whether its renters' requests must carry the canister's signed principal assertion, and
    the public keys that verify one, belong here rather than to each key: a new key of the
    same marketplace (a rotation) needs no re-registration.
    """

    __tablename__ = "marketplaces"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    # off | optional | required (see app/core/principal_assertions.py).
    assertion_mode: Mapped[str] = mapped_column(String(16), server_default="off")


class User(IdMixin, CreatedMixin, Base):
    __tablename__ = "users"
    # A renter is a principal in one marketplace: the same principal in two marketplaces is two
    # renters whose data never meet.
    __table_args__ = (UniqueConstraint("marketplace_id", "principal"),)

    # Renters are identified by their principal; developers own keys and bots, not principals.
    principal: Mapped[str | None] = mapped_column(String(64))
    marketplace_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("marketplaces.id", ondelete="CASCADE")
    )
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
    # The marketplace a marketplace key acts for; NULL for admin and developer keys.
    marketplace_id: Mapped[str | None] = mapped_column(
        String(ID_LENGTH), ForeignKey("marketplaces.id", ondelete="CASCADE"), index=True
    )
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Requests a minute for the whole key; NULL is its scope's default (app/core/ratelimit.py).
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)


class MarketplaceAssertionKey(IdMixin, CreatedMixin, Base):
    """A public key whose signatures prove the principal a marketplace's keys act for.

    A marketplace may hold several so the canister's signing key can be rotated without
    downtime.
    """

    __tablename__ = "marketplace_assertion_keys"
    __table_args__ = (UniqueConstraint("marketplace_id", "public_key"),)

    marketplace_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("marketplaces.id", ondelete="CASCADE")
    )
    algorithm: Mapped[str] = mapped_column(String(16))  # ed25519 | secp256k1
    # Raw bytes, so equality is binary on every backend (MariaDB's default collation is not).
    public_key: Mapped[bytes] = mapped_column(LargeBinary(33).with_variant(VARBINARY(33), "mysql"))
