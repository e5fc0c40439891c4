"""Alembic environment: always online, on the connection handed in by bruno_lab.store.schema."""

from __future__ import annotations

from alembic import context

from bruno_lab.store.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `bruno-lab db upgrade` (bruno_lab.store.schema)")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
