"""Alembic environment: run by adapters.db.migrate with an open connection."""
from alembic import context

from models.orm import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through adapters.db.migrate (it passes the connection)")

# Batch mode: SQLite cannot ALTER most things in place, so Alembic copies the table.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
