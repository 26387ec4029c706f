"""Conversations, messages, ratings and preference profiles (pre-Alembic ``user_version`` 1).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conversations",
        sa.Column("id", sa.Text, primary_key=True),  # uuid4 hex
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("title", sa.Text),  # NULL until set: the first question fills it
        sa.Column("mode", sa.Text, nullable=False, server_default="auto"),
        sa.Column("db_url", sa.Text),  # the agent's database for this conversation
        sa.Column("tables", sa.Text, nullable=False, server_default="[]"),  # JSON list of table file paths
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),  # last message (sidebar order)
    )
    op.create_index("conversations_by_user", "conversations", ["user", sa.text("updated_at DESC")])
    op.create_table(
        "messages",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("conversation_id", sa.Text, sa.ForeignKey("conversations.id", ondelete="CASCADE"), nullable=False),
        sa.Column("parent_id", sa.Integer, sa.ForeignKey("messages.id", ondelete="CASCADE")),  # NULL: first version
        sa.Column("is_current", sa.Integer, nullable=False, server_default="1"),  # the version shown, one per turn
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("meta", sa.Text, nullable=False, server_default="{}"),  # JSON: sources, tool_calls, route, model
        sa.Column("created_at", sa.Float, nullable=False),
        sa.CheckConstraint("role IN ('user', 'assistant')", name="messages_role"),
    )
    op.create_index("messages_by_conversation", "messages", ["conversation_id", "id"])
    op.create_index("messages_by_parent", "messages", ["parent_id"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user", sa.Text, nullable=False),
        sa.Column("conversation_id", sa.Text),  # no foreign key: ratings outlive a chat
        sa.Column("message_id", sa.Integer),
        sa.Column("prompt", sa.Text, nullable=False),
        sa.Column("context", sa.Text),  # JSON: what the model saw besides the prompt
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("sources", sa.Text, nullable=False, server_default="[]"),
        sa.Column("model", sa.Text),
        sa.Column("rating", sa.Text, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", sa.Float, nullable=False),  # time of the latest rating
        sa.CheckConstraint("rating IN ('up', 'down')", name="feedback_rating"),
    )
    op.create_index("feedback_by_user", "feedback", ["user", "created_at"])
    op.create_index("feedback_one_per_message", "feedback", ["user", "message_id"], unique=True,
                    sqlite_where=sa.text("message_id IS NOT NULL"), postgresql_where=sa.text("message_id IS NOT NULL"))  # fmt: skip
    op.create_table(
        "profiles",
        sa.Column("user", sa.Text, primary_key=True),
        sa.Column("manual", sa.Text, nullable=False, server_default=""),  # lines the user wrote
        sa.Column("derived", sa.Text, nullable=False, server_default=""),  # lines derived from feedback
        sa.Column("dismissed", sa.Text, nullable=False, server_default="[]"),  # JSON: derived lines removed
        sa.Column("since", sa.Float, nullable=False, server_default="0"),  # derive only from feedback after
        sa.Column("updated_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    for table in ("profiles", "feedback", "messages", "conversations"):
        op.drop_table(table)
