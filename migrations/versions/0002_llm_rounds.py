"""decision claims: one LLM round per decision across processes, with its budget reservation

Revision ID: 0002_llm_rounds
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0002_llm_rounds"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "decision_claims",
        sa.Column("bot_version_id", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("candle_open_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("expires_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("reserved_usd", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_version_id"],
            ["bot_versions.id"],
            name=op.f("fk_decision_claims_bot_version_id_bot_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decision_claims")),
        sa.UniqueConstraint(
            "bot_version_id",
            "symbol",
            "timeframe",
            "candle_open_at",
            name="uq_decision_claims_key",
        ),
    )


def downgrade() -> None:
    op.drop_table("decision_claims")
