"""events: an index for one renter's feed, by the event's own marketplace and principal

The feed, webhooks and a stream's replay read one renter's events by (marketplace_id,
principal) in `seq` order; without this index MariaDB walks the whole marketplace's events
(ix_events_marketplace_id_seq) to find one renter's.

Revision ID: 0018_events_renter_seq
Revises: 0017_llm_votes_cost_index
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018_events_renter_seq"
down_revision: str | None = "0017_llm_votes_cost_index"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_events_marketplace_id_principal_seq",
        "events",
        ["marketplace_id", "principal", "seq"],
    )


def downgrade() -> None:
    op.drop_index("ix_events_marketplace_id_principal_seq", table_name="events")
