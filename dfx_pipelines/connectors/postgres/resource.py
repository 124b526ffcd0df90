"""`PostgresResource`: a customer's PostgreSQL database, reached through one door — the SQL gate.

A session is opened only for one active connection, with the password from the vault, over TLS
(`sslmode=verify-full` to a customer host; the sandbox's loopback cluster may use another mode outside
production), to the address the host check judged (`hostaddr`, while TLS verifies the name), with
`require_auth=scram-sha-256` so a server cannot talk the client into sending its password in clear, and
with `default_transaction_read_only=on`, `statement_timeout` and `idle_in_transaction_session_timeout`
set at startup and read back (a pooler that dropped them is refused).

At every session the role's privileges are proven least: not a superuser (nor CREATEROLE, CREATEDB,
REPLICATION, BYPASSRLS, nor a member of `pg_write_all_data`), owning no selected schema or table, with no
INSERT/UPDATE/DELETE/TRUNCATE/TRIGGER on a selected table and no CREATE on a selected schema; a refusal
names the offending grant and the REVOKE that removes it.

`GatedPostgres.run` is the only call that sends a metric query. For every query of a batch, before any
of them runs: the shared gate (`platform.sql_gate.check`: one SELECT, selected tables only, every
expression resolved to the columns it reads, unselected and unreadable columns refused, an aggregate
result) and then the cost guard, `EXPLAIN (FORMAT JSON)`, refused above the connection's plan-cost or
plan-rows ceiling with the estimate shown. Then each runs in a read-only transaction through a
server-side cursor that fetches at most the row bound plus one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from pydantic import Field

from dfx_pipelines.connectors.postgres.metrics import TableInfo
from dfx_pipelines.connectors.postgres.selection import PostgresSelection
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.endpoints import check_host
from dfx_pipelines.platform.errors import (
    AuthError,
    ConfigError,
    ConnectionInactiveError,
    ConnectorError,
    IdentifierError,
)
from dfx_pipelines.platform.redaction import redact, register_secret
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.sql_gate import check as gate
from dfx_pipelines.platform.sql_gate.check import SqlRefused

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger(__name__)

KIND = "postgres"
POSTGRES = gate.Dialect("postgres", "PostgreSQL SQL", "PostgreSQL")
DEFAULT_PORT = 5432
CUSTOMER_SSLMODE = "verify-full"
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_STATEMENT_TIMEOUT_MS = 60_000
DEFAULT_IDLE_TIMEOUT_MS = 60_000
DEFAULT_MAX_PLAN_COST = 5_000_000.0  # PostgreSQL's planner units (seq_page_cost = 1): ~ a 40 GB sequential scan
DEFAULT_MAX_PLAN_ROWS = 50_000_000  # rows the plan's scans estimate they will read
MAX_RESULT_ROWS = 50_000  # per metric query: far above an aggregate's groups, far below a table copy
CONNECT_TIMEOUT_S = 10
# Relations a selection may name: tables, partitioned tables, views, materialized views. Not foreign
# tables: reading one reaches another server, outside what the customer pointed us at.
RELKINDS = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view"}
ROLE_FLAGS = (
    ("rolsuper", "is a superuser"),
    ("rolcreaterole", "may create roles (CREATEROLE)"),
    ("rolcreatedb", "may create databases (CREATEDB)"),
    ("rolreplication", "may start replication (REPLICATION)"),
    ("rolbypassrls", "bypasses row-level security (BYPASSRLS)"),
)
WRITE_ROLES = ("pg_write_all_data", "pg_write_server_files", "pg_execute_server_program")
TABLE_WRITES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER")
UNREADABLE = "is not readable by the connection's role (no SELECT on the column)"


class PrivilegeRefused(AuthError):
    """The role may do more than read the selection (or less than it needs): nothing was read."""


class CostRefused(ConnectorError):
    """EXPLAIN estimated more than the connection's ceiling: nothing ran."""

    permanent = True  # the same query is estimated the same until a person raises the ceiling


class StatementTimeout(ConnectorError):
    """PostgreSQL cancelled a statement at its `statement_timeout`."""

    permanent = True  # the same query over the same days would be cancelled again


# ---------------------------------------------------------------- where and how to connect


@dataclass(frozen=True)
class Target:
    """Everything a session needs but the password (safe to show)."""

    host: str
    hostaddr: str
    port: int
    database: str
    user: str
    sslmode: str
    sslrootcert: str  # a PEM file, or "system" (the platform's trusted roots)
    statement_timeout_ms: int
    idle_timeout_ms: int
    sandbox: bool = False


def check_sslmode(value: object, *, sandbox: bool) -> str:
    """`verify-full` to a customer's host; a weaker mode is a downgrade, refused outside the sandbox."""
    if value not in SSLMODES:
        raise ConfigError(f"sslmode {value!r} is not one of {', '.join(SSLMODES)}")
    assert isinstance(value, str)
    if value != CUSTOMER_SSLMODE and not sandbox:
        why = (
            "sends the password without TLS or to an unverified server"
            if value in ("disable", "allow", "prefer")
            else "does not verify the server's name"
        )
        raise ConfigError(
            f"sslmode={value} is refused: it {why}; connections to a customer's database use sslmode=verify-full"
        )
    return value


def _positive_ms(endpoint: Mapping[str, Any], name: str, default: int) -> int:
    value = endpoint.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 100 <= value <= 3_600_000:
        raise ConfigError(f"{name} must be a whole number of milliseconds in 100–3600000, got {value!r}")
    return value


def check_endpoint_config(endpoint: Mapping[str, Any], *, sandbox_allowed: bool, allow_private: bool) -> Target:
    """The connection's `endpoint` as a `Target`: database and role names by the identifier rules, the
    sslmode, the timeouts, and the host by the platform's address rules (resolved and judged)."""
    database = identifiers.postgres_name(endpoint.get("database"), "database name")
    user = identifiers.postgres_name(endpoint.get("user"), "role name")
    port = endpoint.get("port", DEFAULT_PORT)
    host = endpoint.get("host")
    # The sslmode first: a downgrade is refused for what it is, wherever the host points.
    loopback = sandbox_allowed and isinstance(host, str) and host in ("127.0.0.1", "localhost", "::1")
    sslmode = check_sslmode(endpoint.get("sslmode", CUSTOMER_SSLMODE), sandbox=loopback)
    checked = check_host(
        host, port, what="the PostgreSQL host", sandbox_allowed=sandbox_allowed, allow_private_address=allow_private
    )
    return Target(
        host=checked.host,
        hostaddr=str(checked.addresses[0]),
        port=port,
        database=database,
        user=user,
        sslmode=sslmode,
        sslrootcert="system",
        statement_timeout_ms=_positive_ms(endpoint, "statement_timeout_ms", DEFAULT_STATEMENT_TIMEOUT_MS),
        idle_timeout_ms=_positive_ms(endpoint, "idle_in_transaction_session_timeout_ms", DEFAULT_IDLE_TIMEOUT_MS),
        sandbox=checked.sandbox,
    )


def ca_file(platform: Platform, connection_id: str, ca_pem: str | None) -> str:
    """Where libpq finds the CA that signed the server's certificate: a customer's own CA (non-secret PEM
    in the endpoint) written under the home folder, the sandbox CA for the loopback cluster outside
    production, or the system roots."""
    if ca_pem:
        if "-----BEGIN CERTIFICATE-----" not in ca_pem or "PRIVATE KEY" in ca_pem:
            raise ConfigError("ca_pem must be the server's CA certificate in PEM form (and no private key)")
        path = ca_folder(platform) / f"{connection_id}.pem"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(ca_pem)
        return str(path)
    sandbox_ca = platform.settings.sandbox_dir / "sandbox-ca.pem"
    if platform.settings.sandbox_allowed and sandbox_ca.exists():
        return str(sandbox_ca)
    return "system"


def ca_folder(platform: Platform) -> Path:
    return platform.settings.home / "postgres-ca"


def _first_line(exc: BaseException) -> str:
    return redact(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)[:300]


@contextlib.contextmanager
def _client_files(client_cert: tuple[str, str]) -> Iterator[tuple[str, str]]:
    """libpq reads a client certificate and key only from files: they exist for the handshake alone, in a
    private folder (RAM-backed /dev/shm where there is one), the key mode 0600, removed right after."""
    import tempfile

    shm = Path("/dev/shm")
    with tempfile.TemporaryDirectory(
        prefix="dfx-pg-", dir=shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    ) as folder:
        os.chmod(folder, 0o700)
        cert_path, key_path = Path(folder) / "client.crt", Path(folder) / "client.key"
        cert_path.write_text(client_cert[0])
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(client_cert[1])
        yield str(cert_path), str(key_path)


def open_session(
    target: Target, password: str | None = None, *, client_cert: tuple[str, str] | None = None
) -> psycopg.Connection[Any]:
    """A read-only session: TLS as `target` says, SCRAM only (or a client certificate and no password
    exchange at all), timeouts set at startup and read back."""
    import psycopg

    if (password is None) == (client_cert is None):
        raise ConfigError("a PostgreSQL session needs a password or a client certificate (exactly one)")
    if password is not None:
        register_secret(password)
        auth: dict[str, Any] = {"password": password, "require_auth": "scram-sha-256", "sslcertmode": "disable"}
    else:
        assert client_cert is not None
        register_secret(client_cert[1])
        auth = {"require_auth": "none", "sslcertmode": "require"}
    options = " ".join(
        [
            "-c default_transaction_read_only=on",
            f"-c statement_timeout={target.statement_timeout_ms}",
            f"-c idle_in_transaction_session_timeout={target.idle_timeout_ms}",
            "-c search_path=pg_catalog",  # no customer schema can shadow a function or operator we use
        ]
    )
    try:
        with contextlib.ExitStack() as stack:
            if client_cert is not None:
                auth["sslcert"], auth["sslkey"] = stack.enter_context(_client_files(client_cert))
            session = psycopg.connect(
                host=target.host,
                hostaddr=target.hostaddr,
                port=target.port,
                dbname=target.database,
                user=target.user,
                sslmode=target.sslmode,
                sslrootcert=target.sslrootcert,
                sslnegotiation="postgres",
                gssencmode="disable",
                passfile="/dev/null",  # nothing but the vault's secret: never a ~/.pgpass
                options=options,
                connect_timeout=CONNECT_TIMEOUT_S,
                application_name="dfx_pipelines",
                **auth,
            )
    except psycopg.OperationalError as exc:
        text = _first_line(exc)
        if any(word in text for word in ("authentication", "require_auth", "no pg_hba.conf entry")):
            raise AuthError(f"PostgreSQL refused the login of role {target.user}: {text}") from None
        raise ConnectorError(f"could not connect to PostgreSQL at {target.host}:{target.port}: {text}") from None
    try:
        with session.cursor() as cursor:
            cursor.execute(
                "SELECT current_setting('default_transaction_read_only'), current_setting('statement_timeout'), "
                "current_setting('idle_in_transaction_session_timeout')"
            )
            read_only, _timeout, _idle = cursor.fetchone() or ("off", "0", "0")
        session.rollback()
        if read_only != "on":
            raise ConnectorError(
                "the session did not keep default_transaction_read_only=on (a connection pooler dropping startup "
                "options?): refused, nothing was read"
            )
    except BaseException:
        session.close()
        raise
    return session


# ---------------------------------------------------------------- least privilege and the catalog


def privilege_problems(session: psycopg.Connection[Any], selection: PostgresSelection) -> list[str]:
    """Every grant that lets the role do more than read the selection, or that it lacks to read it, each
    named with the statement that fixes it."""
    problems: list[str] = []
    with session.cursor() as cursor:
        cursor.execute(
            "SELECT current_user, " + ", ".join(flag for flag, _ in ROLE_FLAGS) + " FROM pg_catalog.pg_roles "
            "WHERE rolname = current_user"
        )
        row = cursor.fetchone()
        if row is None:
            return ["the session's role is not in pg_roles"]
        role = row[0]
        for (flag, meaning), value in zip(ROLE_FLAGS, row[1:]):
            if value:
                problems.append(f"role {role} {meaning} ({flag}): use a plain login role")
        for write_role in WRITE_ROLES:
            cursor.execute(
                "SELECT pg_catalog.pg_has_role(current_user, oid, 'MEMBER') FROM pg_catalog.pg_roles WHERE rolname = %s",
                (write_role,),
            )
            member = cursor.fetchone()
            if member and member[0]:
                problems.append(f"role {role} is a member of {write_role}: REVOKE {write_role} FROM {role}")
        for schema in sorted(selection.schemas):
            cursor.execute(
                "SELECT pg_catalog.pg_has_role(current_user, nspowner, 'USAGE'), "
                "has_schema_privilege(oid, 'CREATE'), has_schema_privilege(oid, 'USAGE') "
                "FROM pg_catalog.pg_namespace WHERE nspname = %s",
                (schema,),
            )
            found = cursor.fetchone()
            if found is None:  # a selection problem, reported by the catalog check
                continue
            owns, create, usage = found
            if owns:
                problems.append(f"role {role} owns schema {schema}: a read-only role owns nothing it reads")
            if create:
                problems.append(
                    f"role {role} has CREATE on schema {schema}: REVOKE CREATE ON SCHEMA {schema} FROM {role}"
                )
            if not usage:
                problems.append(f"role {role} lacks USAGE on schema {schema}: GRANT USAGE ON SCHEMA {schema} TO {role}")
        for schema, table in selection.tables():
            cursor.execute(
                "SELECT c.relkind, pg_catalog.pg_has_role(current_user, c.relowner, 'USAGE'), "
                "has_any_column_privilege(c.oid, 'INSERT'), has_any_column_privilege(c.oid, 'UPDATE'), "
                "has_table_privilege(c.oid, 'DELETE'), has_table_privilege(c.oid, 'TRUNCATE'), "
                "has_table_privilege(c.oid, 'TRIGGER'), has_any_column_privilege(c.oid, 'SELECT') "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s",
                (schema, table),
            )
            found = cursor.fetchone()
            name = f"{schema}.{table}"
            if found is None:  # a selection problem, reported by the catalog check
                continue
            relkind, owns, *writes, select = found
            if relkind not in RELKINDS:
                problems.append(f"{name} is not a table or view (relkind {relkind!r}); foreign tables are refused")
                continue
            if owns:
                problems.append(f"role {role} owns {name}: a read-only role owns nothing it reads")
            for privilege, granted in zip(TABLE_WRITES, writes):
                if granted:
                    problems.append(f"role {role} has {privilege} on {name}: REVOKE {privilege} ON {name} FROM {role}")
            if not select:
                problems.append(f"role {role} lacks SELECT on {name}: GRANT SELECT ON {name} TO {role}")
    session.rollback()
    return problems


def prove_least_privilege(session: psycopg.Connection[Any], selection: PostgresSelection) -> None:
    problems = privilege_problems(session, selection)
    if problems:
        raise PrivilegeRefused("the PostgreSQL role is not least-privileged, nothing was read: " + "; ".join(problems))


def describe_tables(session: psycopg.Connection[Any], tables: Sequence[tuple[str, str]]) -> dict[str, TableInfo]:
    """Each table's columns and types from `pg_attribute`, and which the role may SELECT (values are
    bound as parameters; the names were checked by the identifier rules anyway)."""
    infos: dict[str, TableInfo] = {}
    with session.cursor() as cursor:
        for schema, table in tables:
            cursor.execute(
                "SELECT c.relkind, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), "
                "has_column_privilege(c.oid, a.attnum, 'SELECT') "
                "FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
                "WHERE n.nspname = %s AND c.relname = %s ORDER BY a.attnum",
                (schema, table),
            )
            rows = cursor.fetchall()
            if rows:
                infos[f"{schema}.{table}"] = TableInfo(
                    {name: kind for _, name, kind, _ in rows},
                    frozenset(name for _, name, _, readable in rows if readable),
                    RELKINDS.get(rows[0][0], rows[0][0]),
                )
    session.rollback()
    return infos


# ---------------------------------------------------------------- the gate


@dataclass(frozen=True)
class GatedQuery:
    sql: str
    label: str = ""
    days: int = 1


@dataclass(frozen=True)
class PlanEstimate:
    total_cost: float
    result_rows: int
    scanned_rows: int  # what the plan's scan nodes expect to read

    def text(self) -> str:
        return f"cost {self.total_cost:,.0f}, {self.scanned_rows:,} rows scanned, {self.result_rows:,} result rows"


@dataclass(frozen=True)
class QueryResult:
    label: str
    sql: str
    rows: list[dict[str, Any]]  # aggregates only
    estimate: PlanEstimate
    seconds: float


@dataclass
class GatedRun:
    results: list[QueryResult] = field(default_factory=list)
    estimates: list[PlanEstimate] = field(default_factory=list)
    statements: int = 0  # every statement sent (catalog, EXPLAIN, queries): the run's round trips


def _scanned_rows(plan: Mapping[str, Any]) -> int:
    own = int(plan.get("Plan Rows", 0)) if "Scan" in str(plan.get("Node Type", "")) else 0
    return own + sum(_scanned_rows(child) for child in plan.get("Plans", []) or [])


class GatedPostgres:
    """PostgreSQL for one connection: the session is opened lazily (the password is read then), and
    `run` is the only call that sends a metric query."""

    def __init__(
        self,
        connection: Connection,
        target: Target,
        credentials: Any,
        *,
        max_rows: int = MAX_RESULT_ROWS,
    ):
        self.connection = connection
        self.target = target
        self.max_rows = max_rows
        self._credentials = credentials  # () -> open_session's keyword arguments, read from the vault when used
        self._session: psycopg.Connection[Any] | None = None
        self._tables: dict[str, TableInfo] = {}
        self.statements = 0

    @property
    def selection(self) -> PostgresSelection:
        return self.connection.selection.narrowed(PostgresSelection)

    @property
    def max_plan_cost(self) -> float:
        return float(self.connection.endpoint.get("max_plan_cost", DEFAULT_MAX_PLAN_COST))

    @property
    def max_plan_rows(self) -> int:
        return int(self.connection.endpoint.get("max_plan_rows", DEFAULT_MAX_PLAN_ROWS))

    def session(self) -> psycopg.Connection[Any]:
        if self._session is None:
            session = open_session(self.target, **self._credentials())
            try:
                with self._errors("the privilege check"):
                    prove_least_privilege(session, self.selection)
            except BaseException:
                session.close()
                raise
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> GatedPostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------ the checks that need no query

    def table_refs(self, tree: Any) -> list[tuple[str, str]]:
        refs = set()
        for node in gate.stored_tables(tree, POSTGRES):
            if not node.db:
                raise SqlRefused(f"table {node.name!r} must be qualified with its schema (schema.table)")
            if node.catalog and node.catalog != self.target.database:
                raise SqlRefused(f"table {node.sql(dialect='postgres')} names another database")
            try:
                refs.add((identifiers.postgres_schema(node.db), identifiers.postgres_name(node.name, "table name")))
            except IdentifierError as exc:
                raise SqlRefused(f"table reference refused: {exc}") from None
        outside = [
            f"{s}.{t}" for s, t in gate.outside_selection(sorted(refs), lambda r: self.selection.is_selected(*r))
        ]
        if outside:
            raise SqlRefused(f"the query names tables outside the connection's selection: {', '.join(outside)}")
        return sorted(refs)

    def _table_infos(self, refs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], TableInfo]:
        missing = [ref for ref in refs if f"{ref[0]}.{ref[1]}" not in self._tables]
        if missing:
            session = self.session()
            with self._errors("the catalog read"):
                self._tables.update(describe_tables(session, missing))
            self.statements += len(missing)
        infos = {}
        for schema, table in refs:
            info = self._tables.get(f"{schema}.{table}")
            if info is None:
                raise SqlRefused(f"table {schema}.{table} does not exist (or the role cannot see it)")
            infos[(schema, table)] = info
        return infos

    def inspect(self, query: GatedQuery) -> Any:
        """The shared gate: SELECT only, selected tables, resolved and selected readable columns, an aggregate."""
        tree = gate.parse_select(query.sql, POSTGRES)
        refs = self.table_refs(tree)
        infos = self._table_infos(refs)
        columns, evidence = gate.read_columns(
            tree,
            {ref: dict(info.columns) for ref, info in infos.items()},
            lambda ref: (self.target.database, ref[0], ref[1]),
            POSTGRES,
            self.target.database,
        )
        restricted = {
            ref: dict.fromkeys(sorted(set(info.columns) - info.readable), UNREADABLE) for ref, info in infos.items()
        }
        gate.check_columns(
            columns, lambda ref: self.selection.columns_of(*ref), restricted, lambda ref: f"{ref[0]}.{ref[1]}", evidence
        )
        gate.require_aggregate(tree, POSTGRES)
        return tree

    # ------------------------------------------------------------ the estimate and the run

    @contextlib.contextmanager
    def _errors(self, label: str) -> Iterator[None]:
        """psycopg's errors as the connector's: a cancelled statement, a refused privilege, anything else,
        each naming what was being done and never quoting more than the server's first line."""
        import psycopg

        try:
            yield
        except psycopg.errors.QueryCanceled:
            self._rollback()
            raise StatementTimeout(
                f"PostgreSQL cancelled {label} after its statement_timeout of {self.target.statement_timeout_ms} ms: "
                "nothing was stored. Backfill a shorter range, add an index on the time column, or raise "
                "statement_timeout_ms on the connection"
            ) from None
        except psycopg.errors.InsufficientPrivilege as exc:
            self._rollback()
            raise PrivilegeRefused(f"PostgreSQL refused {label}: {_first_line(exc)}") from None
        except psycopg.Error as exc:
            self._rollback()
            raise ConnectorError(f"PostgreSQL failed {label}: {_first_line(exc)}") from None

    def _rollback(self) -> None:
        if self._session is not None and not self._session.closed:
            with contextlib.suppress(Exception):
                self._session.rollback()

    @contextlib.contextmanager
    def _statement(self, label: str) -> Iterator[Any]:
        session = self.session()
        with self._errors(label), session.cursor() as cursor:
            self.statements += 1
            yield cursor

    def explain(self, query: GatedQuery) -> PlanEstimate:
        """`EXPLAIN (FORMAT JSON)`: the planner's estimate, nothing executed; refused above the ceilings."""
        from psycopg import sql

        with self._statement(f"the EXPLAIN of {query.label or 'a query'}") as cursor:
            cursor.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + sql.SQL(query.sql))
            document = cursor.fetchone()[0]
        self.session().rollback()
        plan = (document[0] if isinstance(document, list) else document)["Plan"]
        estimate = PlanEstimate(float(plan["Total Cost"]), int(plan["Plan Rows"]), _scanned_rows(plan))
        if estimate.total_cost > self.max_plan_cost or estimate.scanned_rows > self.max_plan_rows:
            raise CostRefused(
                f"EXPLAIN estimates {query.label or 'the query'} at {estimate.text()}, above connection "
                f"{self.connection.id}'s ceiling (cost {self.max_plan_cost:,.0f}, {self.max_plan_rows:,} rows scanned): "
                "nothing ran. Backfill a shorter range, or raise max_plan_cost / max_plan_rows on the connection"
            )
        return estimate

    def _execute(self, query: GatedQuery, estimate: PlanEstimate) -> QueryResult:
        from psycopg.rows import dict_row

        started = time.perf_counter()
        session = self.session()
        with self._statement(query.label or "a query"):
            # A server-side cursor: one row more than the bound is all that ever crosses the wire.
            with session.cursor(name="dfx_metric", row_factory=dict_row) as cursor:
                cursor.execute(query.sql)
                rows = cursor.fetchmany(self.max_rows + 1)
            session.rollback()  # read-only: nothing to commit
        # P13: more rows than the bound is raw rows, not an aggregate: refused, nothing stored.
        gate.check_row_bound(len(rows), self.max_rows, what=f"PostgreSQL query {query.label}".strip(), days=query.days)
        return QueryResult(query.label, query.sql, rows, estimate, time.perf_counter() - started)

    def run(self, queries: Sequence[GatedQuery]) -> GatedRun:
        """Every query gated and estimated before the first runs; then each runs."""
        if not queries:
            raise SqlRefused("no queries to run")
        for query in queries:  # every refusal that needs no estimate comes first
            self.inspect(query)
        outcome = GatedRun()
        outcome.estimates = [self.explain(query) for query in queries]
        outcome.results = [self._execute(q, e) for q, e in zip(queries, outcome.estimates)]
        outcome.statements = self.statements
        return outcome


class PostgresResource(dg.ConfigurableResource):
    """The customers' PostgreSQL databases, each reached only through `gated(platform, connection)`.
    Nothing secret is configured here: passwords live in the vault."""

    max_result_rows: int = Field(
        default=MAX_RESULT_ROWS, ge=1, description="Most rows a metric query may return (a metric aggregates)."
    )

    def gated(self, platform: Platform, connection: Connection) -> GatedPostgres:
        """The gated handle for one active PostgreSQL connection. No session is opened here."""
        if connection.kind != KIND:
            raise ConfigError(f"connection {connection.id} is a {connection.kind} connection, not postgres")
        if not connection.is_active:
            raise ConnectionInactiveError(f"connection {connection.id!r} is {connection.status.value}: nothing is read")
        return gated_for(platform, connection, max_rows=self.max_result_rows)


def key_pem_of(line: str) -> str:
    """The vault's one-line key (PKCS#8 DER, base64) as the PEM libpq reads, in memory."""
    import base64

    from cryptography.hazmat.primitives import serialization

    key = serialization.load_der_private_key(base64.b64decode(line), password=None)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")
    register_secret(pem)
    return pem


def gated_for(platform: Platform, connection: Connection, *, max_rows: int = MAX_RESULT_ROWS) -> GatedPostgres:
    target = check_endpoint_config(
        connection.endpoint,
        sandbox_allowed=platform.settings.sandbox_allowed,
        allow_private=connection.settings.allow_private_address,
    )
    target = Target(
        **{**target.__dict__, "sslrootcert": ca_file(platform, connection.id, connection.endpoint.get("ca_pem"))}
    )

    def credentials() -> dict[str, Any]:
        if connection.endpoint.get("client_cert_pem"):
            line = platform.vault.get(connection.secret_ref("database_client_key")).get_secret_value()
            return {"client_cert": (connection.endpoint["client_cert_pem"], key_pem_of(line))}
        return {"password": platform.vault.get(connection.secret_ref("database_password")).get_secret_value()}

    return GatedPostgres(connection, target, credentials, max_rows=max_rows)


__all__ = [
    "CostRefused",
    "GatedPostgres",
    "GatedQuery",
    "PostgresResource",
    "PrivilegeRefused",
    "StatementTimeout",
    "Target",
    "check_endpoint_config",
    "open_session",
    "prove_least_privilege",
]
