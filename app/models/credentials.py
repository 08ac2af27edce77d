"""A renter's exchange credentials, Fernet-encrypted; one row per (user, exchange, testnet)."""

from __future__ import annotations

import hashlib

from sqlalchemy import Boolean, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import ID_LENGTH, Base, IdMixin, TimestampMixin


class ExchangeCredential(IdMixin, TimestampMixin, Base):
    __tablename__ = "exchange_credentials"
    __table_args__ = (UniqueConstraint("user_id", "exchange", "testnet"),)

    # Erasing a user erases their credentials with them.
    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE")
    )
    exchange: Mapped[str] = mapped_column(String(32))
    testnet: Mapped[bool] = mapped_column(Boolean)
    api_key_ciphertext: Mapped[str] = mapped_column(Text)
    api_secret_ciphertext: Mapped[str] = mapped_column(Text)
    # Shown to the renter so they can tell keys apart; four characters reveal nothing usable.
    api_key_last4: Mapped[str] = mapped_column(String(4))
    fernet_key_id: Mapped[str] = mapped_column(String(64), index=True)

    @property
    def key_version(self) -> str:
        """Changes whenever the stored key pair does (a Fernet ciphertext never repeats, and a
        rotation counts as a change); a digest, so it reveals nothing of the key."""
        stored = f"{self.api_key_ciphertext}\0{self.api_secret_ciphertext}"
        return hashlib.sha256(stored.encode()).hexdigest()
