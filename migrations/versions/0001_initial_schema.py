"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import app.core.db

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_logs",
        sa.Column("actor_api_key_id", sa.String(length=32), nullable=True),
        sa.Column("principal", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=32), nullable=False),
        sa.Column("resource_id", sa.String(length=32), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_logs")),
    )
    with op.batch_alter_table("audit_logs", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_audit_logs_actor_api_key_id"), ["actor_api_key_id"], unique=False
        )
        batch_op.create_index(
            "ix_audit_logs_resource", ["resource_type", "resource_id"], unique=False
        )

    op.create_table(
        "users",
        sa.Column("principal", sa.String(length=64), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("display_name", sa.String(length=200), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("erased_at", app.core.db.UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("principal", name=op.f("uq_users_principal")),
    )
    op.create_table(
        "api_keys",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=8), nullable=False),
        sa.Column("key_digest", sa.String(length=64), nullable=False),
        sa.Column("owner_user_id", sa.String(length=32), nullable=True),
        sa.Column("last_used_at", app.core.db.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", app.core.db.UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_user_id"],
            ["users.id"],
            name=op.f("fk_api_keys_owner_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_digest", name=op.f("uq_api_keys_key_digest")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_api_keys_owner_user_id"), ["owner_user_id"], unique=False
        )

    op.create_table(
        "bots",
        sa.Column("owner_user_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("current_version", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_user_id"],
            ["users.id"],
            name=op.f("fk_bots_owner_user_id_users"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bots")),
    )
    with op.batch_alter_table("bots", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bots_owner_user_id"), ["owner_user_id"], unique=False)

    op.create_table(
        "exchange_credentials",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("exchange", sa.String(length=32), nullable=False),
        sa.Column("testnet", sa.Boolean(), nullable=False),
        sa.Column("api_key_ciphertext", sa.Text(), nullable=False),
        sa.Column("api_secret_ciphertext", sa.Text(), nullable=False),
        sa.Column("api_key_last4", sa.String(length=4), nullable=False),
        sa.Column("fernet_key_id", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_exchange_credentials_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_credentials")),
        sa.UniqueConstraint(
            "user_id",
            "exchange",
            "testnet",
            name=op.f("uq_exchange_credentials_user_id_exchange_testnet"),
        ),
    )
    with op.batch_alter_table("exchange_credentials", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_exchange_credentials_fernet_key_id"), ["fernet_key_id"], unique=False
        )

    op.create_table(
        "bot_marketplace_registrations",
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("price", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("currency", sa.String(length=16), nullable=False),
        sa.Column("billing_period", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"],
            ["bots.id"],
            name=op.f("fk_bot_marketplace_registrations_bot_id_bots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_marketplace_registrations")),
    )
    with op.batch_alter_table("bot_marketplace_registrations", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_bot_marketplace_registrations_bot_id"), ["bot_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_bot_marketplace_registrations_status"), ["status"], unique=False
        )

    op.create_table(
        "bot_versions",
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("strategy", sa.JSON(), nullable=False),
        sa.Column("config_hash", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_bot_versions_bot_id_bots"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bot_versions")),
        sa.UniqueConstraint("bot_id", "version", name=op.f("uq_bot_versions_bot_id_version")),
    )
    op.create_table(
        "idempotency_records",
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("request_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_content_type", sa.String(length=100), nullable=True),
        sa.Column(
            "response_body",
            sa.LargeBinary().with_variant(mysql.MEDIUMBLOB(), "mysql"),
            nullable=True,
        ),
        sa.Column("expires_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"],
            ["api_keys.id"],
            name=op.f("fk_idempotency_records_api_key_id_api_keys"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint(
            "api_key_id",
            "idempotency_key",
            name=op.f("uq_idempotency_records_api_key_id_idempotency_key"),
        ),
    )
    with op.batch_alter_table("idempotency_records", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_idempotency_records_expires_at"), ["expires_at"], unique=False
        )

    op.create_table(
        "decisions",
        sa.Column("bot_version_id", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("candle_open_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("indicators", sa.JSON(), nullable=False),
        sa.Column("indicator_score", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("combined_score", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("rule_version", sa.String(length=32), nullable=False),
        sa.Column("rule_params", sa.JSON(), nullable=False),
        sa.Column("fallback_reason", sa.String(length=500), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_version_id"],
            ["bot_versions.id"],
            name=op.f("fk_decisions_bot_version_id_bot_versions"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
        sa.UniqueConstraint(
            "bot_version_id",
            "symbol",
            "timeframe",
            "candle_open_at",
            name=op.f("uq_decisions_bot_version_id_symbol_timeframe_candle_open_at"),
        ),
    )
    op.create_table(
        "subscriptions",
        sa.Column("user_id", sa.String(length=32), nullable=False),
        sa.Column("bot_id", sa.String(length=32), nullable=False),
        sa.Column("bot_version_id", sa.String(length=32), nullable=False),
        sa.Column("credential_id", sa.String(length=32), nullable=True),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("timeframe", sa.String(length=4), nullable=False),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("quote_amount", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("risk", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("status_reason", sa.String(length=500), nullable=True),
        sa.Column("ends_at", app.core.db.UTCDateTime(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["bot_id"], ["bots.id"], name=op.f("fk_subscriptions_bot_id_bots"), ondelete="RESTRICT"
        ),
        sa.ForeignKeyConstraint(
            ["bot_version_id"],
            ["bot_versions.id"],
            name=op.f("fk_subscriptions_bot_version_id_bot_versions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["credential_id"],
            ["exchange_credentials.id"],
            name=op.f("fk_subscriptions_credential_id_exchange_credentials"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_subscriptions_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscriptions")),
    )
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_subscriptions_bot_id"), ["bot_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_subscriptions_credential_id"), ["credential_id"], unique=False
        )
        batch_op.create_index(
            "ix_subscriptions_dispatch",
            ["status", "bot_version_id", "symbol", "timeframe"],
            unique=False,
        )
        batch_op.create_index(
            "ix_subscriptions_status_ends_at", ["status", "ends_at"], unique=False
        )
        batch_op.create_index("ix_subscriptions_user_id_id", ["user_id", "id"], unique=False)

    op.create_table(
        "llm_votes",
        sa.Column("decision_id", sa.String(length=32), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("weight", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=True),
        sa.Column("confidence", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("reasoning", sa.Text(), nullable=True),
        sa.Column("cited_indicators", sa.JSON(), nullable=False),
        sa.Column("abstain_reason", sa.String(length=500), nullable=True),
        sa.Column("tokens_in", sa.Integer(), nullable=False),
        sa.Column("tokens_out", sa.Integer(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("cost_usd", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name=op.f("fk_llm_votes_decision_id_decisions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_llm_votes")),
    )
    with op.batch_alter_table("llm_votes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_llm_votes_decision_id"), ["decision_id"], unique=False)

    op.create_table(
        "performance_logs",
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("recorded_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("equity", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("realized_pnl", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("unrealized_pnl", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_performance_logs_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_performance_logs")),
        sa.UniqueConstraint(
            "subscription_id",
            "recorded_at",
            name=op.f("uq_performance_logs_subscription_id_recorded_at"),
        ),
    )
    op.create_table(
        "positions",
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("quantity", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("average_cost", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("realized_pnl", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("quote_balance", app.core.db.Money(precision=36, scale=18), nullable=False),
        sa.Column("peak_price", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_positions_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_positions")),
        sa.UniqueConstraint("subscription_id", name=op.f("uq_positions_subscription_id")),
    )
    op.create_table(
        "trades",
        sa.Column("subscription_id", sa.String(length=32), nullable=False),
        sa.Column("decision_id", sa.String(length=32), nullable=True),
        sa.Column("client_order_id", sa.String(length=36), nullable=False),
        sa.Column("exchange_order_id", sa.String(length=64), nullable=True),
        sa.Column("mode", sa.String(length=8), nullable=False),
        sa.Column("symbol", sa.String(length=20), nullable=False),
        sa.Column("side", sa.String(length=4), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_quote", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("requested_quantity", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("quantity", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("price", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("quote_quantity", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("fee", app.core.db.Money(precision=36, scale=18), nullable=True),
        sa.Column("fee_asset", sa.String(length=16), nullable=True),
        sa.Column("realized_pnl", app.core.db.Money(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("updated_at", app.core.db.UTCDateTime(), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.id"],
            name=op.f("fk_trades_decision_id_decisions"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscriptions.id"],
            name=op.f("fk_trades_subscription_id_subscriptions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trades")),
        sa.UniqueConstraint("client_order_id", name=op.f("uq_trades_client_order_id")),
        sa.UniqueConstraint(
            "subscription_id", "decision_id", name=op.f("uq_trades_subscription_id_decision_id")
        ),
    )
    with op.batch_alter_table("trades", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_trades_decision_id"), ["decision_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_trades_status"), ["status"], unique=False)


def downgrade() -> None:
    # Dropping a table drops its indexes; dropping those first fails on MySQL, where a
    # foreign key still needs them.
    op.drop_table("trades")
    op.drop_table("positions")
    op.drop_table("performance_logs")
    op.drop_table("llm_votes")
    op.drop_table("subscriptions")
    op.drop_table("decisions")
    op.drop_table("idempotency_records")
    op.drop_table("bot_versions")
    op.drop_table("bot_marketplace_registrations")
    op.drop_table("exchange_credentials")
    op.drop_table("bots")
    op.drop_table("api_keys")
    op.drop_table("users")
    op.drop_table("audit_logs")
