"""signed principal assertions: public keys and an assertion mode per marketplace key

Revision ID: 0006_assertion_keys
Revises: 0005_idempotency_key_ids
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import app.core.db

revision: str = "0006_assertion_keys"
down_revision: str | None = "0005_idempotency_key_ids"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assertion_mode", sa.String(length=16), server_default="off", nullable=False)
        )
    op.create_table(
        "api_key_assertion_keys",
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column(
            "public_key",
            sa.LargeBinary(length=33).with_variant(mysql.VARBINARY(length=33), "mysql"),
            nullable=False,
        ),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_api_key_assertion_keys_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_key_assertion_keys")),
        sa.UniqueConstraint(
            "api_key_id", "public_key", name=op.f("uq_api_key_assertion_keys_api_key_id_public_key")
        ),
    )


def downgrade() -> None:
    op.drop_table("api_key_assertion_keys")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("assertion_mode")
