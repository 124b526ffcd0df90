"""Alembic environment for the metric database; run programmatically by `platform.db.migrate`.

Our own version table, so the metric database can share a PostgreSQL database with Dagster's storage
(which keeps its alembic revision in the default `alembic_version`)."""

from alembic import context

VERSION_TABLE = "dfx_alembic_version"

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic upgrade` from a shell: build an engine from the configured URL
    import sqlalchemy as sa

    url = context.config.get_main_option("sqlalchemy.url")
    if url is None:
        raise RuntimeError("alembic: no sqlalchemy.url configured")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        context.configure(connection=connection, render_as_batch=True, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, render_as_batch=True, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
