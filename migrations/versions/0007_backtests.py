"""backtests: stored candles and resumable replays of a bot version

Revision ID: 0007_backtests
Revises: 0006_assertion_keys
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0007_backtests"
down_revision: str | None = "0006_assertion_keys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "candles",
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("open_time", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("open", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("high", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("low", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("close", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("volume", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("close_time", app.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "timeframe", "open_time", name=op.f("pk_candles")),
    )
    op.create_table(
        "backtests",
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("bot_version_id", sa.String(length=32), nullable=False),
        sa.Column("bot_version", sa.Integer(), nullable=False),
        sa.Column("owner_api_key_id", sa.String(length=32), nullable=True),
        sa.Column("owner_user_id", sa.String(length=32), nullable=True),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("start_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("end_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("quote_amount", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("llm", sa.String(length=16), nullable=False),
        sa.Column("max_llm_cost_usd", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("llm_reserved_usd", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("llm_cost_usd", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("candles_done", sa.Integer(), nullable=False),
        sa.Column("candles_total", sa.Integer(), nullable=False),
        sa.Column("fence", sa.Integer(), nullable=False),
        sa.Column("lease_until", app.core.db.UTCDateTime(), nullable=True),
        sa.Column("state", sa.JSON(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("started_at", app.core.db.UTCDateTime(), nullable=True),
        sa.Column("finished_at", app.core.db.UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_backtests_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["bot_version_id"],
            ["bot_versions.id"],
            name=op.f("fk_backtests_bot_version_id_bot_versions"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_backtests_owner_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_user_id"],
            ["users.id"],
            name=op.f("fk_backtests_owner_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_backtests")),
    )
    with op.batch_alter_table("backtests", schema=None) as batch_op:
        batch_op.create_index(
            "ix_backtests_bot_id_created_at", ["bot_id", "created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_backtests_owner_api_key_id"), ["owner_api_key_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_backtests_owner_user_id"), ["owner_user_id"], unique=False
        )
        batch_op.create_index(
            "ix_backtests_status_lease_until", ["status", "lease_until"], unique=False
        )


def downgrade() -> None:
    # Dropping the tables drops their indexes; MySQL refuses to drop an index a foreign key
    # needs on its own.
    op.drop_table("backtests")
    op.drop_table("candles")
