"""Alembic environment: runs on the connection `open_store` passes in `config.attributes`."""

from __future__ import annotations

from alembic import context

from abscopal.cohort.store import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata)
with context.begin_transaction():
    context.run_migrations()
