"""llm_votes: an index on (decision_id, provider, cost_usd) in place of decision_id's

The sums of LLM spend (a bot's budget, the console's bots list and health page) join votes to
decisions and read only these columns: with them in the index, no vote row is read.

Revision ID: 0017_llm_votes_cost_index
Revises: 0016_console_sessions
Create Date: 2026-12-07
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_llm_votes_cost_index"
down_revision: str | None = "0016_console_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Made first: the foreign key on decision_id needs an index that starts with it.
    op.create_index(
        "ix_llm_votes_decision_id_provider_cost",
        "llm_votes",
        ["decision_id", "provider", "cost_usd"],
        unique=False,
    )
    op.drop_index(op.f("ix_llm_votes_decision_id"), table_name="llm_votes")


def downgrade() -> None:
    op.create_index(op.f("ix_llm_votes_decision_id"), "llm_votes", ["decision_id"], unique=False)
    op.drop_index("ix_llm_votes_decision_id_provider_cost", table_name="llm_votes")
