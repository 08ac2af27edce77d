"""binary collations for key-like columns on MySQL/MariaDB

Revision ID: 0004_binary_collations
Revises: 0003_order_fencing
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0004_binary_collations"
down_revision: str | None = "0003_order_fencing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (table, column, length): each compared byte for byte, as SQLite already compares them.
COLUMNS = (
    ("api_keys", "prefix", 8),
    ("idempotency_records", "idempotency_key", 255),
    ("trades", "client_order_id", 36),
)


def _retype(binary: bool) -> None:
    # SQLite compares text by bytes already (its BINARY collation): nothing to change there,
    # and rebuilding the tables to say so would only risk their data.
    if op.get_bind().dialect.name == "sqlite":
        return
    for table, column, length in COLUMNS:
        # No duplicates can appear: rows unique under a case-insensitive collation are
        # unique under a binary one too.
        with op.batch_alter_table(table) as batch_op:
            batch_op.alter_column(
                column,
                existing_type=sa.String(length),
                type_=app.core.db.case_sensitive_string(length) if binary else sa.String(length),
                existing_nullable=False,
            )


def upgrade() -> None:
    _retype(binary=True)


def downgrade() -> None:
    _retype(binary=False)
