"""fenced order attempts: a lease and fencing token per trade, a send deadline, sent_at;
an index for the reconciler's scan of recent decisions

Revision ID: 0003_order_fencing
Revises: 0002_llm_rounds
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.core.db

revision: str = "0003_order_fencing"
down_revision: str | None = "0002_llm_rounds"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.add_column(sa.Column("fence", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("lease_until", app.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("send_before", app.core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("sent_at", app.core.db.UTCDateTime(), nullable=True))
        batch_op.drop_index(batch_op.f("ix_trades_status"))
        batch_op.create_index("ix_trades_status_lease_until", ["status", "lease_until"])
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.create_index("ix_decisions_created_at", ["created_at"])


def downgrade() -> None:
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_index("ix_decisions_created_at")
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.drop_index("ix_trades_status_lease_until")
        batch_op.create_index(batch_op.f("ix_trades_status"), ["status"], unique=False)
        batch_op.drop_column("sent_at")
        batch_op.drop_column("send_before")
        batch_op.drop_column("lease_until")
        batch_op.drop_column("fence")
