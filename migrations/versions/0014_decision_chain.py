"""decision chain: what recomputes a decision (candle window, prompt digest, raw answers,
seat order, the prompt text for a while), and each bot's hash chain with its signed head

Decisions made before this revision stay out of the chains: their inputs were not recorded,
so a chain starts with a bot's first decision made after it.

Revision ID: 0014_decision_chain
Revises: 0013_stream_tickets
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0014_decision_chain"
down_revision: str | None = "0013_stream_tickets"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("candle_count", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("candles_first_open_at", app.core.db.UTCDateTime(), nullable=True)
        )
        batch.add_column(sa.Column("candles_sha256", sa.String(length=64), nullable=True))
    with op.batch_alter_table("llm_votes") as batch:
        batch.add_column(sa.Column("seat", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("prompt_sha256", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("response_text", sa.Text(), nullable=True))
    op.create_table(
        "decision_prompts",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("system", sa.Text(), nullable=False),
        sa.Column("user", sa.Text(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name=op.f("fk_decision_prompts_decision_id_decisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("decision_id", name=op.f("pk_decision_prompts")),
    )
    op.create_index(
        op.f("ix_decision_prompts_created_at"), "decision_prompts", ["created_at"], unique=False
    )
    op.create_table(
        "chain_links",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_chain_links_bot_id_bots"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name=op.f("fk_chain_links_decision_id_decisions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("decision_id", name=op.f("pk_chain_links")),
        sa.UniqueConstraint("bot_id", "seq", name=op.f("uq_chain_links_bot_id_seq")),
    )
    op.create_table(
        "chain_heads",
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("key_id", sa.String(length=64), nullable=False),
        sa.Column("signature", sa.String(length=88), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_chain_heads_bot_id_bots"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("bot_id", name=op.f("pk_chain_heads")),
    )


def downgrade() -> None:
    op.drop_table("chain_heads")
    op.drop_table("chain_links")
    op.drop_index(op.f("ix_decision_prompts_created_at"), table_name="decision_prompts")
    op.drop_table("decision_prompts")
    with op.batch_alter_table("llm_votes") as batch:
        batch.drop_column("response_text")
        batch.drop_column("prompt_sha256")
        batch.drop_column("seat")
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("candles_sha256")
        batch.drop_column("candles_first_open_at")
        batch.drop_column("candle_count")
