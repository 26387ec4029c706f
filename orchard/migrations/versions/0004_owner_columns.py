"""The ``user`` columns become ``owner``: ``user`` is a reserved word in Postgres.

Indexes follow the rename on both engines (SQLite >= 3.25 rewrites them; Postgres indexes point
at the column, not its name).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TABLES = ("conversations", "feedback", "profiles", "api_keys", "preference_pairs")


def upgrade() -> None:
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} RENAME COLUMN "user" TO owner')


def downgrade() -> None:
    for table in TABLES:
        op.execute(f'ALTER TABLE {table} RENAME COLUMN owner TO "user"')
