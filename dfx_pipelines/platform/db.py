"""The metric database: one SQLAlchemy engine per URL, migrated to the newest schema on first use.

PostgreSQL in production, a local SQLite file in the embedded default. The schema is owned by Alembic
migrations under `platform/migrations/`; `tables.py` mirrors it for queries.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from dfx_pipelines.platform.errors import ConfigError

_MIGRATIONS = Path(__file__).with_name("migrations")
_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


def _alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def migrate(engine: sa.Engine) -> None:
    config = _alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        # "heads": features add migrations that branch from the base independently (bigquery, lifecycle).
        command.upgrade(config, "heads")


def is_current(engine: sa.Engine) -> bool:
    heads = set(ScriptDirectory.from_config(_alembic_config(str(engine.url))).get_heads())
    with engine.connect() as connection:
        return (
            set(
                MigrationContext.configure(
                    connection, opts={"version_table": "dfx_alembic_version"}
                ).get_current_heads()
            )
            == heads
        )


def describe_url(url: str) -> str:
    """The URL as it may be shown: password hidden (also when the URL does not parse)."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "a malformed URL"


def _open(url: str) -> sa.Engine:
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    # A wrong host must fail in seconds, not hang: PostgreSQL's libpq waits forever without connect_timeout.
    connect_args = {"connect_timeout": 10} if url.startswith("postgresql") else {}
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args=connect_args)
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _enable_sqlite_foreign_keys)
    try:
        migrate(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def get_engine(url: str) -> sa.Engine:
    """The engine for `url`, created and migrated once per process. A database that cannot be opened is
    a `ConfigError` naming it (password hidden) and the driver's first line, never a traceback."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            try:
                engine = _open(url)
            except (sa.exc.SQLAlchemyError, OSError) as exc:
                reason = (
                    str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
                    if str(exc).strip()
                    else type(exc).__name__
                )
                raise ConfigError(f"the metric database {describe_url(url)} cannot be opened: {reason[:200]}") from None
            _engines[url] = engine
        return engine


def dispose_engine(url: str) -> None:
    with _lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


def inserted_id(result: sa.CursorResult[Any]) -> Any:
    """The primary key of the one row an INSERT added."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("the INSERT reported no primary key")
    return key[0]
