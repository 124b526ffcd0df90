"""Making deleted rows physically gone from the databases, not just invisible.

A DELETE (or an UPDATE) leaves the old row's bytes in the table's files: SQLite keeps them in free pages,
PostgreSQL keeps the dead tuple until a vacuum — and a plain VACUUM only marks its space reusable, it
does not overwrite it (measured: see `dfx_pipelines_tests/lifecycle/test_deletion_traces.py`), nor does
autovacuum, which may be off or late anyway. So after a deletion:
- SQLite files (the embedded default's metric database, Dagster's index and run databases) are
  rewritten with `VACUUM`;
- on PostgreSQL the tables the deletion touched are rewritten with `VACUUM FULL`, which copies the live
  rows into new files (indexes and TOAST included) and drops the old ones. It takes an ACCESS EXCLUSIVE
  lock on each table while it copies it (readers and writers of that table wait: 30-180 ms per table,
  about 1 s for all of them, on the tests' small databases; it grows with the table's size) and needs
  free disk space for the copy. Plain VACUUM took 130 ms in all but left the id on the pages of runs,
  run_tags, event_logs and connections that still hold other rows.
Neither statement may run inside a transaction: both use an autocommit connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from contextlib import closing

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from dfx_pipelines.lifecycle import dagster_private

# The tables of Dagster's storage a connection's deletion deletes from or updates, per storage.
DAGSTER_TABLES = {
    "run_storage": ("runs", "run_tags"),
    "event_log_storage": (
        "event_logs",
        "asset_event_tags",
        "asset_keys",
        "asset_check_executions",
        "dynamic_partitions",
    ),
    "schedule_storage": ("job_ticks", "instigators", "jobs"),
}


def vacuum_postgres(url: str | sa.URL, table_names: Iterable[str]) -> list[str]:
    """`VACUUM FULL` each existing table (autocommit: VACUUM cannot run in a transaction). Returns the
    tables rewritten."""
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    done = []
    try:
        with engine.connect() as db:
            existing = set(sa.inspect(db).get_table_names())
            for name in table_names:
                if name in existing:  # names come from the code above, never from input
                    db.execute(sa.text(f'VACUUM FULL "{name}"'))
                    done.append(name)
    finally:
        engine.dispose()
    return done


def compact_metric_db(engine: sa.Engine, table_names: Iterable[str]) -> list[str]:
    """The metric database (also the registry's and connectors' tables) after a deletion."""
    if engine.dialect.name == "sqlite":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
            db.execute(sa.text("VACUUM"))
        return ["(sqlite file)"]
    if engine.dialect.name == "postgresql":
        return vacuum_postgres(engine.url, table_names)
    return []


def compact_dagster_storage(instance: dg.DagsterInstance) -> list[str]:
    """Dagster's storage after a deletion: its SQLite files rewritten, or its PostgreSQL tables."""
    done: list[str] = []
    for attribute, table_names in DAGSTER_TABLES.items():
        url = dagster_private.postgres_url(instance, attribute)
        if url:
            done += vacuum_postgres(url, table_names)
    for path in dagster_private.sqlite_files(instance, DAGSTER_TABLES):
        if path.exists():
            with closing(sqlite3.connect(path, isolation_level=None)) as db:
                db.execute("VACUUM")
            done.append(str(path.name))
    return done
