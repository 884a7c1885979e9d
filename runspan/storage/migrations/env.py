"""Alembic environment for runspan's schema: runs on the connection runspan hands it.

runspan runs its migrations itself (:mod:`runspan.storage.migrate`), so this never reads an
``alembic.ini`` nor configures logging: an application's logging stays as the application set it.
"""

from __future__ import annotations

from alembic import context

from runspan.storage.migrate import VERSION_TABLE
from runspan.storage.schema import declare_partial_indexes, declared, metadata

declare_partial_indexes()
connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    include_object=declared,
    version_table=VERSION_TABLE,
    # SQLite cannot ALTER most things in place: let Alembic rebuild tables when needed.
    render_as_batch=connection.dialect.name == "sqlite",
    transactional_ddl=True,
)
with context.begin_transaction():
    context.run_migrations()
