"""Alembic environment: run by Database.migrate() with an open connection."""

from alembic import context

import core.models  # noqa: F401  (fills Base.metadata)
from core.kernel.db import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through core.kernel.db.Database.migrate()")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
