"""The application database the pipeline does not own (demo requests, accounts, email correspondence,
billing), as configured tables: which table holds a category, its key, the timestamp that starts its
retention clock, the column holding a data subject's email, and which columns may be anonymised or
rectified. Shared by the retention job and the data-subject request jobs.

Every configured name is checked with `sql_identifier` before any statement is built, and all of them
are checked before anything is changed, so one bad name refuses the whole run with nothing done.
Statements are built with SQLAlchemy Core (`sa.table`/`sa.column`): values are always bound parameters.
The application database is never migrated from here; its schema belongs to the application.
"""

import os
import threading

import dagster as dg
import sqlalchemy as sa

from dfx_pipelines.platform.env_values import resolved
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.identifiers import sql_identifier

APP_DB_URL_ENV = "DFX_APP_DB_URL"


class AppTable(dg.Config):
    """One configured application table holding one category of data."""

    category: str  # demo_requests, accounts, email_correspondence, billing_records, or any other label
    table: str
    key_column: str
    clock_column: str  # the timestamp that starts the retention clock (e.g. contract end for accounts)
    email_column: str | None = None  # where a data subject's email is; None: not searched by requests
    # (pydantic copies a mutable default per instance: RUF012 does not apply to dg.Config fields)
    anonymise_columns: list[str] = []  # noqa: RUF012 - set to NULL when the rule (or an erasure) anonymises
    rectifiable_columns: list[str] = []  # noqa: RUF012 - what a rectification request may change

    def checked(self) -> "AppTable":
        """This table with every name validated; raises `IdentifierError` naming the bad one."""
        sql_identifier(self.category)
        for name in (
            self.table,
            self.key_column,
            self.clock_column,
            *self.anonymise_columns,
            *self.rectifiable_columns,
        ):
            sql_identifier(name)
        if self.email_column is not None:
            sql_identifier(self.email_column)
        return self

    def sa_table(self) -> sa.TableClause:
        self.checked()
        columns = {self.key_column, self.clock_column, *self.anonymise_columns, *self.rectifiable_columns}
        if self.email_column:
            columns.add(self.email_column)
        return sa.table(self.table, *(sa.column(name) for name in sorted(columns)))


# The conventional schema of the product's application database; deployments override `tables`.
DEFAULT_APP_TABLES = (
    AppTable(
        category="demo_requests",
        table="demo_requests",
        key_column="id",
        clock_column="submitted_at",
        email_column="email",
        anonymise_columns=["name", "email", "company", "message"],
        rectifiable_columns=["name", "company"],
    ),
    AppTable(
        category="accounts",
        table="accounts",
        key_column="id",
        clock_column="contract_ended_at",
        email_column="email",
        anonymise_columns=["name", "email", "phone"],
        rectifiable_columns=["name", "email", "phone"],
    ),
    AppTable(
        category="email_correspondence",
        table="email_correspondence",
        key_column="id",
        clock_column="sent_at",
        email_column="counterpart_email",
        anonymise_columns=["counterpart_email", "subject", "body"],
    ),
    AppTable(
        category="billing_records",
        table="billing_records",
        key_column="id",
        clock_column="issued_at",
        email_column="billing_email",
        anonymise_columns=["billing_email", "billing_name"],
        rectifiable_columns=["billing_name"],
    ),
)

_engines: dict[str, sa.Engine] = {}
_lock = threading.Lock()


class AppDatabaseResource(dg.ConfigurableResource):
    """Where the application tables are. `url` may carry a password: pass `EnvVar("DFX_APP_DB_URL")`, or
    leave it unset and the DFX_APP_DB_URL environment variable is read at run time."""

    url: str | None = None
    tables: list[AppTable] | None = None  # None: DEFAULT_APP_TABLES

    def resolved_url(self) -> str | None:
        return resolved(self.url) or os.environ.get(APP_DB_URL_ENV) or None

    def checked_tables(self) -> list[AppTable]:
        tables = list(self.tables) if self.tables is not None else list(DEFAULT_APP_TABLES)
        categories = [t.checked().category for t in tables]
        if len(set(categories)) != len(categories):
            raise ConfigError(f"each category may be configured once, got {categories}")
        return tables

    def engine(self) -> sa.Engine:
        url = self.resolved_url()
        if not url:
            raise ConfigError(f"no application database configured: set {APP_DB_URL_ENV} or the resource's url")
        return app_engine(url)


def app_engine(url: str) -> sa.Engine:
    """One engine per application database URL; no migration (the application owns that schema)."""
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = sa.create_engine(url, pool_pre_ping=True)
        return engine


def dispose_app_engines() -> None:
    with _lock:
        engines = list(_engines.values())
        _engines.clear()
    for engine in engines:
        engine.dispose()


def email_matches(table: AppTable, clause: sa.TableClause, email: str) -> sa.ColumnElement[bool]:
    """Case-insensitive match of the subject's email (addresses are compared lower-cased)."""
    if table.email_column is None:
        raise ConfigError(f"application table {table.table} has no email column to search")
    return sa.func.lower(clause.c[table.email_column]) == email.strip().lower()
