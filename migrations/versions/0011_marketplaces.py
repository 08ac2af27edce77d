"""marketplaces: a marketplace key acts only for its own renters; assertion keys and mode move
from each key to its marketplace

Existing marketplace keys, renters (and their events) and listings move to one marketplace
named `default`, made only when there is such data. Its assertion mode is the strictest of the live marketplace keys'
modes, and it holds every public key any marketplace key held: no renter request that was
refused before is accepted after.

Revision ID: 0011_marketplaces
Revises: 0010_events
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import mysql

import app.core.db

revision: str = "0011_marketplaces"
down_revision: str | None = "0010_events"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_MARKETPLACE = "default"
_PUBLIC_KEY = sa.LargeBinary(length=33).with_variant(mysql.VARBINARY(length=33), "mysql")
_STRICTNESS = ("off", "optional", "required")


def _insert(statement: str) -> sa.TextClause:
    # The time goes through the column's own type, as the ORM would write it.
    return sa.text(statement).bindparams(sa.bindparam("now", type_=app.core.db.UTCDateTime()))


def upgrade() -> None:
    op.create_table(
        "marketplaces",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("assertion_mode", sa.String(length=16), server_default="off", nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplaces")),
        sa.UniqueConstraint("name", name=op.f("uq_marketplaces_name")),
    )
    op.create_table(
        "marketplace_assertion_keys",
        sa.Column("marketplace_id", sa.String(length=32), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", _PUBLIC_KEY, nullable=False),
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", app.core.db.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["marketplace_id"],
            ["marketplaces.id"],
            name=op.f("fk_marketplace_assertion_keys_marketplace_id_marketplaces"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_marketplace_assertion_keys")),
        sa.UniqueConstraint(
            "marketplace_id",
            "public_key",
            name=op.f("uq_marketplace_assertion_keys_marketplace_id_public_key"),
        ),
    )
    for table in ("api_keys", "users", "bot_marketplace_registrations", "events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("marketplace_id", sa.String(length=32), nullable=True))
    _move_to_default_marketplace()
    op.create_index("ix_events_marketplace_id_seq", "events", ["marketplace_id", "seq"])
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_api_keys_marketplace_id"), ["marketplace_id"])
        batch_op.create_foreign_key(
            batch_op.f("fk_api_keys_marketplace_id_marketplaces"),
            "marketplaces",
            ["marketplace_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.drop_column("assertion_mode")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint("uq_users_principal", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_users_marketplace_id_principal"), ["marketplace_id", "principal"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_users_marketplace_id_marketplaces"),
            "marketplaces",
            ["marketplace_id"],
            ["id"],
            ondelete="CASCADE",
        )
    with op.batch_alter_table("bot_marketplace_registrations", schema=None) as batch_op:
        batch_op.alter_column("marketplace_id", existing_type=sa.String(length=32), nullable=False)
        batch_op.create_index(
            batch_op.f("ix_bot_marketplace_registrations_marketplace_id"), ["marketplace_id"]
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_bot_marketplace_registrations_marketplace_id_marketplaces"),
            "marketplaces",
            ["marketplace_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.drop_table("api_key_assertion_keys")


def _move_to_default_marketplace() -> None:
    bind = op.get_bind()
    keys = bind.execute(
        sa.text("SELECT revoked_at, assertion_mode FROM api_keys WHERE scope = 'marketplace'")
    ).all()
    renters = bind.execute(sa.text("SELECT COUNT(*) FROM users WHERE kind = 'renter'")).scalar()
    listings = bind.execute(sa.text("SELECT COUNT(*) FROM bot_marketplace_registrations")).scalar()
    if not keys and not renters and not listings:
        return
    live_modes = [mode for revoked_at, mode in keys if revoked_at is None] or ["off"]
    mode = max(live_modes, key=_STRICTNESS.index)
    marketplace_id = app.core.db.new_id()
    now = app.core.db.utcnow()
    bind.execute(
        _insert(
            "INSERT INTO marketplaces (id, name, assertion_mode, created_at) "
            "VALUES (:id, :name, :mode, :now)"
        ),
        {"id": marketplace_id, "name": DEFAULT_MARKETPLACE, "mode": mode, "now": now},
    )
    public_keys = bind.execute(
        sa.text(
            "SELECT k.algorithm, k.public_key FROM api_key_assertion_keys k "
            "JOIN api_keys a ON a.id = k.api_key_id WHERE a.revoked_at IS NULL ORDER BY k.id"
        )
    ).all()
    seen: set[bytes] = set()
    for algorithm, public_key in public_keys:
        if bytes(public_key) in seen:
            continue
        seen.add(bytes(public_key))
        bind.execute(
            _insert(
                "INSERT INTO marketplace_assertion_keys "
                "(id, marketplace_id, algorithm, public_key, created_at) "
                "VALUES (:id, :marketplace_id, :algorithm, :public_key, :now)"
            ),
            {
                "id": app.core.db.new_id(),
                "marketplace_id": marketplace_id,
                "algorithm": algorithm,
                "public_key": public_key,
                "now": now,
            },
        )
    for statement in (
        "UPDATE api_keys SET marketplace_id = :id WHERE scope = 'marketplace'",
        "UPDATE users SET marketplace_id = :id WHERE kind = 'renter'",
        "UPDATE bot_marketplace_registrations SET marketplace_id = :id",
        # A renter's events are read by the renter's marketplace.
        "UPDATE events SET marketplace_id = :id WHERE user_id IN "
        "(SELECT id FROM users WHERE kind = 'renter')",
    ):
        bind.execute(sa.text(statement), {"id": marketplace_id})


def downgrade() -> None:
    """Back to keys that act for every principal. Refused while two marketplaces share a
    principal: their renters would become one user."""
    op.create_table(
        "api_key_assertion_keys",
        sa.Column("api_key_id", sa.String(length=32), nullable=False),
        sa.Column("algorithm", sa.String(length=16), nullable=False),
        sa.Column("public_key", _PUBLIC_KEY, nullable=False),
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
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("assertion_mode", sa.String(length=16), server_default="off", nullable=False)
        )
    _copy_back_to_keys()
    op.drop_index("ix_events_marketplace_id_seq", table_name="events")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_column("marketplace_id")
    with op.batch_alter_table("bot_marketplace_registrations", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_bot_marketplace_registrations_marketplace_id_marketplaces"),
            type_="foreignkey",
        )
        batch_op.drop_index(batch_op.f("ix_bot_marketplace_registrations_marketplace_id"))
        batch_op.drop_column("marketplace_id")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_users_marketplace_id_marketplaces"), type_="foreignkey"
        )
        batch_op.drop_constraint(batch_op.f("uq_users_marketplace_id_principal"), type_="unique")
        batch_op.create_unique_constraint("uq_users_principal", ["principal"])
        batch_op.drop_column("marketplace_id")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_api_keys_marketplace_id_marketplaces"), type_="foreignkey"
        )
        batch_op.drop_index(batch_op.f("ix_api_keys_marketplace_id"))
        batch_op.drop_column("marketplace_id")
    op.drop_table("marketplace_assertion_keys")
    op.drop_table("marketplaces")


def _copy_back_to_keys() -> None:
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "UPDATE api_keys SET assertion_mode = (SELECT m.assertion_mode FROM marketplaces m "
            "WHERE m.id = api_keys.marketplace_id) WHERE marketplace_id IS NOT NULL"
        )
    )
    pairs = bind.execute(
        sa.text(
            "SELECT a.id, k.algorithm, k.public_key FROM api_keys a "
            "JOIN marketplace_assertion_keys k ON k.marketplace_id = a.marketplace_id"
        )
    ).all()
    for api_key_id, algorithm, public_key in pairs:
        bind.execute(
            _insert(
                "INSERT INTO api_key_assertion_keys "
                "(id, api_key_id, algorithm, public_key, created_at) "
                "VALUES (:id, :api_key_id, :algorithm, :public_key, :now)"
            ),
            {
                "id": app.core.db.new_id(),
                "api_key_id": api_key_id,
                "algorithm": algorithm,
                "public_key": public_key,
                "now": app.core.db.utcnow(),
            },
        )
