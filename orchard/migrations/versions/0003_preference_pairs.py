"""Preference pairs that are not two thumbs (pre-Alembic ``user_version`` 3).

The critique's revision over its draft (``ai-feedback``), a best-of-n candidate the user preferred
over the one picked for them (``best-of-n``).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "preference_pairs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("chosen", sa.Text, nullable=False),
        sa.Column("rejected", sa.Text, nullable=False),
        sa.Column("principle", sa.Text),  # ai-feedback: the principles the draft failed
        sa.Column("conversation_id", sa.Text),
        sa.Column("message_id", sa.Integer),  # the answer (the chosen one) it came from
        sa.Column("created_at", sa.Float, nullable=False),
        sa.CheckConstraint("source IN ('ai-feedback', 'best-of-n')", name="preference_pairs_source"),
    )
    op.create_index("preference_pairs_by_user", "preference_pairs", ["user", "created_at"])


def downgrade() -> None:
    op.drop_table("preference_pairs")
