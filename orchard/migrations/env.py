"""Alembic's environment for Orchard's state database, configured in code (no alembic.ini).

:func:`orchard.migrations.upgrade` hands over the connection (already inside the transaction
that holds the migration lock) as ``config.attributes["connection"]``; offline (``--sql``) runs
take ``sqlalchemy.url`` from the config.
"""

from __future__ import annotations

from alembic import context

config = context.config

if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    connection = config.attributes["connection"]
    context.configure(connection=connection, target_metadata=None)
    with context.begin_transaction():  # a no-op: the caller's transaction is the one
        context.run_migrations()
