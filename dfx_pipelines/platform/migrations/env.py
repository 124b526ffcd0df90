"""Alembic environment for the metric database; run programmatically by `platform.db.migrate`."""

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:  # `alembic upgrade` from a shell: build an engine from the configured URL
    import sqlalchemy as sa

    engine = sa.create_engine(context.config.get_main_option("sqlalchemy.url"))
    with engine.begin() as connection:
        context.configure(connection=connection, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
