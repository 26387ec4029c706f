"""API keys of ``orchard api`` (pre-Alembic ``user_version`` 2).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, primary_key=True),  # public key id (the key's prefix)
        sa.Column("user", sa.Text, nullable=False),  # whose data the key reaches
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("secret_hash", sa.Text, nullable=False),  # sha256 of the whole key; the key is never stored
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("last_used_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
    )
    op.create_index("api_keys_by_user", "api_keys", ["user", "created_at"])


def downgrade() -> None:
    op.drop_table("api_keys")
