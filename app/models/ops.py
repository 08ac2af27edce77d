"""Operational tables: idempotency records for replicated outcalls, and the audit trail."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, UniqueConstraint
from sqlalchemy.dialects.mysql import MEDIUMBLOB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import UTCDateTime, case_sensitive_string
from app.models.base import ID_LENGTH, Base, CreatedMixin, IdMixin


class IdempotencyRecord(IdMixin, CreatedMixin, Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (
        # The database, not a process, decides which copy of a replicated request runs.
        UniqueConstraint("api_key_id", "idempotency_key"),
    )

    api_key_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("api_keys.id", ondelete="CASCADE")
    )
    idempotency_key: Mapped[str] = mapped_column(case_sensitive_string(255))
    request_fingerprint: Mapped[str] = mapped_column(String(64))
    # in_progress until the first copy finishes; then the stored response is replayed.
    status: Mapped[str] = mapped_column(String(16))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_content_type: Mapped[str | None] = mapped_column(String(100))
    response_body: Mapped[bytes | None] = mapped_column(
        # MEDIUMBLOB on MySQL: a plain BLOB stops at 64 KiB.
        LargeBinary().with_variant(MEDIUMBLOB(), "mysql")
    )
    # The keyring key that sealed response_body, so `keys rotate` knows what is left to do.
    fernet_key_id: Mapped[str | None] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class AuditLog(IdMixin, CreatedMixin, Base):
    __tablename__ = "audit_logs"
    __table_args__ = (Index("ix_audit_logs_resource", "resource_type", "resource_id"),)

    # Plain ids, not foreign keys: the trail must survive the deletion of what it describes.
    actor_api_key_id: Mapped[str | None] = mapped_column(String(ID_LENGTH), index=True)
    principal: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(32))
    resource_id: Mapped[str | None] = mapped_column(String(ID_LENGTH))
    request_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
