"""market streams: the latest streamed price per symbol (without Redis), and process leases
(the one active stream process)

Revision ID: 0015_market_streams
Revises: 0014_decision_chain
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0015_market_streams"
down_revision: str | None = "0014_decision_chain"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "latest_prices",
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("price", app.core.db.Money(), nullable=False),
        sa.Column("observed_at", app.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", name=op.f("pk_latest_prices")),
    )
    op.create_table(
        "process_leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=64), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", app.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_process_leases")),
    )


def downgrade() -> None:
    op.drop_table("process_leases")
    op.drop_table("latest_prices")
