"""Bots, their immutable strategy versions, and their marketplace listings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Money
from app.models.base import ID_LENGTH, Base, CreatedMixin, IdMixin, TimestampMixin


class Bot(IdMixin, TimestampMixin, Base):
    __tablename__ = "bots"

    # A developer with bots cannot be deleted out from under their renters.
    owner_user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="RESTRICT"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | archived
    current_version: Mapped[int] = mapped_column(Integer, default=1)


class BotVersion(IdMixin, CreatedMixin, Base):
    """A strategy config frozen at one version; subscriptions pin one, decisions key on it."""

    __tablename__ = "bot_versions"
    __table_args__ = (UniqueConstraint("bot_id", "version"),)

    bot_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bots.id", ondelete="CASCADE")
    )
    version: Mapped[int] = mapped_column(Integer)
    strategy: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64))


class BotMarketplaceRegistration(IdMixin, TimestampMixin, Base):
    __tablename__ = "bot_marketplace_registrations"

    bot_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("bots.id", ondelete="CASCADE"), index=True
    )
    # The marketplace whose renters may subscribe; a bot may be listed on several.
    marketplace_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("marketplaces.id", ondelete="CASCADE"), index=True
    )
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    price: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(16))
    billing_period: Mapped[str] = mapped_column(String(16))  # day | week | month
    status: Mapped[str] = mapped_column(String(16), default="active", index=True)
