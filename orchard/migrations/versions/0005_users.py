"""Users who logged in (team mode): identity, claims shown, admin flag, first and last login.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_key", sa.Text, primary_key=True),  # Identity.user: what every other table's owner holds
        sa.Column("issuer", sa.Text),  # OIDC issuer (team mode), else NULL
        sa.Column("subject", sa.Text),  # OIDC subject
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("email", sa.Text),
        sa.Column("is_admin", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("first_login_at", sa.Float, nullable=False),
        sa.Column("last_login_at", sa.Float, nullable=False),
        sa.Column("logins", sa.Integer, nullable=False, server_default="1"),
    )
    op.create_index("users_by_identity", "users", ["issuer", "subject"], unique=True)
    op.create_index("users_by_email", "users", ["email"])


def downgrade() -> None:
    op.drop_table("users")
