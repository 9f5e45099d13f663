"""Alembic environment of the catalogue: runs on the connection ``database.migrate`` passes.

The catalogue is migrated programmatically (``biobank.catalog.database.migrate``), which
hands its open connection over in ``config.attributes["connection"]``. Offline (SQL script)
mode is not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from biobank.catalog.schema import Base


def run_migrations_online() -> None:
    """Run the migrations on the connection handed over by ``database.migrate``."""
    connection = context.config.attributes.get("connection")
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "the catalogue is migrated with biobank.catalog.database.migrate(engine), which "
            "passes its connection to Alembic; the alembic command line is not supported"
        )
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("offline (SQL script) migrations of the catalogue are not supported")
run_migrations_online()
