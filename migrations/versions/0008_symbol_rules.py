"""symbol rules stored for backtests: a rerun needs no exchange

Revision ID: 0008_symbol_rules
Revises: 0007_backtests
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0008_symbol_rules"
down_revision: str | None = "0007_backtests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "symbol_rules",
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("fetched_at", app.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_symbol_rules")),
    )


def downgrade() -> None:
    op.drop_table("symbol_rules")
