"""The audit trail: who asked, uploaded, deleted, exported, created or revoked a key, logged in.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),  # the user key of who did it
        sa.Column("action", sa.Text, nullable=False),  # ask, upload, delete, export, key.create, key.revoke, login
        sa.Column("target", sa.Text),  # conversation id, document, key id ...
        sa.Column("detail", sa.Text, nullable=False, server_default="{}"),  # JSON object
    )
    op.create_index("audit_by_time", "audit", ["at"])
    op.create_index("audit_by_actor", "audit", ["actor", "at"])


def downgrade() -> None:
    op.drop_table("audit")
