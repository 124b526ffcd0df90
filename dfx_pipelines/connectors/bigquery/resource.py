"""`BigQueryResource`: dagster-gcp's BigQuery resource, reduced to one door — the budget gate.

Connectors get a `GatedBigQuery` for one connection. It has no `query`, no client attribute and no
other way to send SQL: `run_gated` / `run_gated_batch` are the only calls, and each goes

  SELECT-only parse → tables named in the SQL ⊆ selection → columns vs. selection and policy tags
  (live table metadata) → dry run → `referencedTables` ⊆ selection → projected bytes and cost →
  monthly ledger + other runs' reservations + projection vs. budget, with this run's projection
  reserved in the same locked transaction → run under `maximum_bytes_billed` and settle the real
  `totalBytesBilled` into the ledger, or queue a pending approval and raise `AwaitingApproval`
  (nothing executed).

A batch (a backfill's days, every metric of a run) is priced as a whole and gated once before the
first query runs. The inherited `get_client()` — which would hand out an ungated client, and with
`gcp_credentials` write the key to a temp file and set GOOGLE_APPLICATION_CREDENTIALS — refuses.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_gcp import BigQueryResource as DagsterGcpBigQueryResource
from pydantic import Field, field_validator

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.credentials import build_client, check_api_endpoint, check_token_uri
from dfx_pipelines.connectors.bigquery.gate import (
    BudgetNotConfigured,
    CapExceeded,
    DryRunFailed,
    GateError,
    QueryRefused,
)
from dfx_pipelines.connectors.bigquery.ledger import (
    DEFAULT_RESERVATION_LEASE,
    ApprovalRecord,
    BudgetStore,
    Reservation,
    default_owner,
)
from dfx_pipelines.connectors.bigquery.selection import BigQuerySelection
from dfx_pipelines.connectors.bigquery.sql_check import (
    TableRef,
    check_columns,
    check_tables,
    parse_select,
    read_columns,
    table_refs,
)
from dfx_pipelines.platform.errors import AuthError, ConfigError, ConnectionInactiveError, ConnectorError
from dfx_pipelines.platform.http import api_calls
from dfx_pipelines.platform.redaction import redact
from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.sql_gate.check import SqlRefused, check_row_bound

if TYPE_CHECKING:
    import requests
    from google.cloud import bigquery

log = logging.getLogger(__name__)

KIND = "bigquery"
MAX_VIEW_DEPTH = 5
MAX_RESULT_ROWS = 50_000  # per metric query: far above any aggregate's groups, far below a table copy
_PARAM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_LEGACY_TYPES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL", "RECORD": "STRUCT"}


class AwaitingApproval(GateError):
    """Over budget: nothing ran; a person must approve `approval` (then a sensor re-launches the run)."""

    def __init__(self, approval: ApprovalRecord, projection: gate.Projection, decision: gate.BudgetDecision):
        self.approval = approval
        self.projection = projection
        self.decision = decision
        super().__init__(
            f"over the monthly budget, nothing was run: {decision.reason}. Approval {approval.id} is pending "
            f"(projected {projection.billed_bytes} bytes billed, {gate.usd(projection.cost_usd)}); "
            f"approve it with `dfx bigquery approve {approval.id}` or reject it with `dfx bigquery reject {approval.id}`"
        )


@dataclass(frozen=True)
class GatedQuery:
    """One SELECT and its named parameters (`@name`), with a label for metadata. `days`: how many days
    the query's result covers (a range query groups by day), for the row bound's message."""

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""
    days: int = 1


@dataclass(frozen=True)
class QueryResult:
    label: str
    fingerprint: str
    job_id: str
    rows: list[dict[str, Any]]  # aggregates only: what a metric query returns, held in memory
    projection: gate.Projection
    bytes_processed: int
    bytes_billed: int


@dataclass(frozen=True)
class GateOutcome:
    results: list[QueryResult]
    fingerprint: str
    projection: gate.Projection  # the batch as a whole
    decision: gate.BudgetDecision
    approval_id: str | None
    month_to_date_bytes: int  # after this batch
    month_to_date_usd: float
    budget_usd: float | None
    round_trips: int  # HTTP requests this batch sent (token, metadata, dry runs, jobs, result pages)
    gate_round_trips: int  # of which before the first real job: the gate's own overhead
    gate_seconds: float
    dry_runs: int = 0  # one per query: a range is priced by one dry run per query, not one per day

    @property
    def bytes_billed(self) -> int:
        return sum(r.bytes_billed for r in self.results)


@dataclass
class _Inspected:
    query: GatedQuery
    fingerprint: str
    tree: Any
    tables: list[TableRef]


def _query_parameter(name: str, value: Any) -> Any:
    from google.cloud import bigquery

    if not _PARAM_NAME.match(name):
        raise QueryRefused(f"invalid query parameter name {name!r}")
    if isinstance(value, (list, tuple)):
        kinds = {_scalar_type(v) for v in value}
        if len(kinds) > 1:
            raise QueryRefused(f"array parameter @{name} mixes types")
        return bigquery.ArrayQueryParameter(name, kinds.pop() if kinds else "STRING", list(value))
    return bigquery.ScalarQueryParameter(name, _scalar_type(value), value)


def _scalar_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOL"
    if isinstance(value, int):
        return "INT64"
    if isinstance(value, float):
        return "FLOAT64"
    if isinstance(value, Decimal):
        return "NUMERIC"
    if isinstance(value, datetime):
        return "TIMESTAMP"
    if isinstance(value, date):
        return "DATE"
    if isinstance(value, str):
        return "STRING"
    raise QueryRefused(f"unsupported query parameter type {type(value).__name__}")


def _sql_type(schema_field: Any) -> str:
    kind = _LEGACY_TYPES.get(schema_field.field_type, schema_field.field_type)
    if kind == "STRUCT":
        kind = "STRUCT<" + ", ".join(f"{sub.name} {_sql_type(sub)}" for sub in schema_field.fields) + ">"
    return f"ARRAY<{kind}>" if schema_field.mode == "REPEATED" else kind


def _tags(schema_field: Any) -> tuple[str, ...]:
    own = tuple(schema_field.policy_tags.names) if schema_field.policy_tags else ()
    nested = tuple(tag for sub in schema_field.fields or () for tag in _tags(sub))
    return tuple(sorted(set(own + nested)))  # a record with a tagged field counts as tagged


@dataclass(frozen=True)
class _TableMeta:
    columns: dict[str, str]
    tagged: dict[str, tuple[str, ...]]
    view_query: str | None


def _api_error_text(exc: Exception) -> str:
    errors = getattr(exc, "errors", None) or []
    first = errors[0] if errors and isinstance(errors[0], dict) else {}
    reason = first.get("reason") or type(exc).__name__
    message = first.get("message") or getattr(exc, "message", "") or str(exc)
    return redact(f"{reason}: {str(message)[:400]}")


@contextlib.contextmanager
def _auth_errors() -> Iterator[None]:
    """A refused or revoked key surfaces as google-auth's RefreshError: say so, without its payload."""
    from google.auth import exceptions as auth_exceptions

    try:
        yield
    except auth_exceptions.GoogleAuthError as exc:
        raise AuthError(f"BigQuery refused the connection's service-account key: {redact(str(exc))[:200]}") from None


def _api_reason(exc: Exception) -> str | None:
    errors = getattr(exc, "errors", None) or []
    return errors[0].get("reason") if errors and isinstance(errors[0], dict) else None


class GatedBigQuery:
    """BigQuery for one connection, through the budget gate and nothing else.

    The client is built lazily into a private slot and never returned; the only calls that send SQL
    are `run_gated` and `run_gated_batch` (a test checks no other code in the connector calls `query`)."""

    __slots__ = (
        "_client_and_session",
        "_factory",
        "_metadata",
        "clock",
        "connection",
        "lease",
        "margin",
        "max_rows",
        "store",
        "ttl",
    )

    def __init__(
        self,
        connection: Connection,
        store: BudgetStore,
        client_factory: Callable[[], tuple[bigquery.Client, requests.Session]],
        *,
        margin: float = gate.DEFAULT_CAP_MARGIN,
        ttl: timedelta = timedelta(days=7),
        clock: Callable[[], datetime] | None = None,
        max_rows: int = MAX_RESULT_ROWS,
        lease: timedelta = DEFAULT_RESERVATION_LEASE,
    ):
        self.connection = connection
        self.lease = lease
        self.max_rows = max_rows
        self.store = store
        self.margin = margin
        self.ttl = ttl
        self.clock = clock or store.clock
        self._factory = client_factory
        self._client_and_session: tuple[Any, Any] | None = None
        self._metadata: dict[TableRef, _TableMeta] = {}

    # ------------------------------------------------------------ plumbing (private)

    def _client(self) -> Any:
        if self._client_and_session is None:
            self._client_and_session = self._factory()  # the key is decrypted here, not before
        return self._client_and_session[0]

    @property
    def round_trips(self) -> int:
        """HTTP requests sent so far (token fetches included)."""
        return api_calls(self._client_and_session[1]) if self._client_and_session else 0

    def close(self) -> None:
        if self._client_and_session is not None:
            self._client_and_session[0].close()
            self._client_and_session = None

    @property
    def project(self) -> str:
        return self.connection.endpoint["project"]

    def _table_meta(self, ref: TableRef) -> _TableMeta:
        """Live schema and policy tags (tags can be added after connect), cached for this client's life."""
        if ref not in self._metadata:
            from google.api_core import exceptions
            from google.cloud import bigquery

            try:
                with _auth_errors():
                    table = self._client().get_table(
                        bigquery.TableReference(bigquery.DatasetReference(ref.project, ref.dataset), ref.table)
                    )
            except exceptions.GoogleAPICallError as exc:
                raise QueryRefused(f"could not read the metadata of {ref}: {_api_error_text(exc)}") from None
            self._metadata[ref] = _TableMeta(
                {f.name: _sql_type(f) for f in table.schema},
                {f.name: tags for f in table.schema if (tags := _tags(f))},
                table.view_query if table.table_type == "VIEW" else None,
            )
        return self._metadata[ref]

    def _check_columns(self, tree: Any, refs: list[TableRef], depth: int = 0) -> None:
        if depth > MAX_VIEW_DEPTH:
            raise QueryRefused("views nested too deeply to check their columns")
        metas = {ref: self._table_meta(ref) for ref in refs}
        columns, evidence = read_columns(tree, {ref: meta.columns for ref, meta in metas.items()}, self.project)
        check_columns(
            columns,
            self.connection.selection.narrowed(BigQuerySelection),
            {ref: meta.tagged for ref, meta in metas.items()},
            self.connection.endpoint.get("granted_policy_tags", []),
            evidence,
        )
        for ref, meta in metas.items():
            if meta.view_query:  # a view reading a tagged column must not launder it
                inner = parse_select(meta.view_query)
                inner_refs = table_refs(inner, ref.project)
                check_tables(
                    inner_refs, self.connection.selection.narrowed(BigQuerySelection), self.project, f"view {ref.key}"
                )
                self._check_columns(inner, inner_refs, depth + 1)

    def _inspect(self, query: GatedQuery) -> _Inspected:
        """Everything that needs no request: SELECT only, tables named, parameters typed."""
        tree = parse_select(query.sql)
        refs = table_refs(tree, self.project)
        check_tables(refs, self.connection.selection.narrowed(BigQuerySelection), self.project, "the query")
        for name, value in query.params.items():
            _query_parameter(name, value)
        return _Inspected(query, gate.fingerprint(query.sql, query.params), tree, refs)

    def _job_config(self, query: GatedQuery, **options: Any) -> Any:
        from google.cloud import bigquery

        return bigquery.QueryJobConfig(
            query_parameters=[_query_parameter(k, v) for k, v in query.params.items()], **options
        )

    def _dry_run(self, item: _Inspected) -> gate.Projection:
        from google.api_core import exceptions

        try:
            with _auth_errors():
                job = self._client().query(
                    item.query.sql,
                    job_config=self._job_config(item.query, dry_run=True, use_query_cache=False),
                    job_retry=None,
                )
        except exceptions.GoogleAPICallError as exc:
            raise DryRunFailed(f"dry run failed, nothing was run: {_api_error_text(exc)}") from None
        referenced = [TableRef(t.project, t.dataset_id, t.table_id) for t in job.referenced_tables or []]
        check_tables(
            referenced,
            self.connection.selection.narrowed(BigQuerySelection),
            self.project,
            "the dry run's referencedTables",
        )
        processed = int(job.total_bytes_processed or 0)
        return gate.project(processed, max(len(referenced), 1), self.connection.settings.price_per_tib_usd, self.margin)

    def _execute(self, item: _Inspected, projection: gate.Projection, reservation: Reservation) -> QueryResult:
        from google.api_core import exceptions

        job_id = f"dfx_{self.connection.id.replace('-', '_')}_{uuid.uuid4().hex}"
        config = self._job_config(item.query, maximum_bytes_billed=projection.cap_bytes)

        def settle(billed: int | None) -> None:
            self.store.settle_job(
                reservation, projected_billed=projection.billed_bytes, cap_bytes=projection.cap_bytes, billed=billed
            )

        self.store.job_sent(reservation, projection.cap_bytes)  # in flight before it is sent; refused if lapsed
        job = None
        try:
            # job_retry=None: a failed job is reported, never re-submitted behind anyone's back.
            with _auth_errors():
                job = self._client().query(item.query.sql, job_config=config, job_id=job_id, job_retry=None)
                # One row more than allowed tells us there were too many without fetching them all.
                rows = [dict(row.items()) for row in job.result(job_retry=None, max_results=self.max_rows + 1)]
        except exceptions.GoogleAPICallError as exc:
            if _api_reason(exc) == "bytesBilledLimitExceeded":
                settle(None)
                raise CapExceeded(
                    f"BigQuery job {job_id} would bill more than its cap of {projection.cap_bytes} bytes "
                    f"(dry run projected {projection.billed_bytes}); it failed unbilled and was not retried: "
                    f"{_api_error_text(exc)}"
                ) from None
            self._settle_failed(job_id, settle)
            raise ConnectorError(f"BigQuery job {job_id} failed: {_api_error_text(exc)}") from None
        except AuthError:
            if job is not None:  # the job was accepted before the token failed: it may have billed
                self._settle_failed(job_id, settle)
            else:
                settle(None)  # the token failed before the job was sent
            raise
        billed = int(job.total_bytes_billed or 0)
        settle(billed)
        # P13: a metric is an aggregate; the shared gate's row bound (billed, nothing stored when exceeded:
        # never silently truncated or split into more billed queries behind the budget's back).
        what = f"BigQuery job {job_id}" + (f" ({item.query.label or 'query'})" if item.query.days > 1 else "")
        try:
            check_row_bound(len(rows), self.max_rows, what=what, days=item.query.days)
        except SqlRefused as exc:
            raise GateError(str(exc)) from None
        return QueryResult(
            item.query.label, item.fingerprint, job_id, rows, projection, int(job.total_bytes_processed or 0), billed
        )

    def _settle_failed(self, job_id: str, settle: Callable[[int | None], None]) -> None:
        """A job that failed after it ran (a lost result page, a timeout) may still have billed: read the
        job's own statistics and put the real bill in the ledger, so the budget never forgets spend. If
        the bill cannot be read, the job stays in flight and releasing the reservation charges its cap."""
        try:
            billed = int(self._client().get_job(job_id).total_bytes_billed or 0)
        except Exception:  # noqa: BLE001 - best effort on an error path; the original error is raised
            log.warning("could not read the bill of failed BigQuery job %s; its cap will be charged", job_id)
            return
        settle(billed if billed else None)

    # ------------------------------------------------------------ the gate

    def run_gated(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        *,
        asset: str,
        partition: str,
        approval_id: str | None = None,
        run_id: str | None = None,
    ) -> GateOutcome:
        """One query through the gate. Raises `AwaitingApproval` when over budget (nothing executed)."""
        return self.run_gated_batch(
            [GatedQuery(sql, dict(params or {}))],
            asset=asset,
            partition=partition,
            approval_id=approval_id,
            run_id=run_id,
        )

    def run_gated_batch(
        self,
        queries: Sequence[GatedQuery],
        *,
        asset: str,
        partition: str,
        approval_id: str | None = None,
        run_id: str | None = None,
    ) -> GateOutcome:
        """Every query dry-run and priced first, the batch gated once as a whole, then each executed."""
        if not queries:
            raise QueryRefused("no queries to run")
        budget = self.connection.settings.monthly_budget_usd
        if budget is None or budget <= 0:
            raise BudgetNotConfigured(
                f"connection {self.connection.id} has no monthly budget: no BigQuery query may run (set settings.monthly_budget_usd)"
            )
        started = time.perf_counter()
        trips_before = self.round_trips
        inspected = [self._inspect(q) for q in queries]  # every refusal that needs no request comes first
        for item in inspected:
            self._check_columns(item.tree, item.tables)
        projections = [self._dry_run(item) for item in inspected]
        projection = gate.total(projections)
        fingerprint = gate.batch_fingerprint([item.fingerprint for item in inspected])
        price = self.connection.settings.price_per_tib_usd
        if approval_id is not None:
            # An approval is the person's decision for exactly this work: spent before anything runs.
            self.store.consume(
                approval_id,
                connection_id=self.connection.id,
                fingerprint=fingerprint,
                projected_billed=projection.billed_bytes,
                run_id=run_id,
            )
        # Decided and reserved in one locked transaction: concurrent runs cannot all pass on the same head-room.
        reservation, decision = self.store.reserve(
            self.connection.id,
            projection,
            budget_usd=budget,
            price_per_tib_usd=price,
            approved=approval_id is not None,
            owner=default_owner(run_id),
            lease=self.lease,
            month=gate.month_of(self.clock()),
        )
        if reservation is None:
            excerpt = "\n-- next query --\n".join(
                item.query.sql + "".join(f"\n-- @{k} = {v}" for k, v in sorted(item.query.params.items()))
                for item in inspected
            )
            approval = self.store.request(
                connection_id=self.connection.id,
                fingerprint=fingerprint,
                sql=excerpt,
                queries=len(inspected),
                projection=projection,
                decision=decision,
                asset=asset,
                partition=partition,
                ttl=self.ttl,
            )
            log.warning("BigQuery %s over budget: approval %s pending", self.connection.id, approval.id)
            raise AwaitingApproval(approval, projection, decision)
        gate_trips = self.round_trips - trips_before
        gate_seconds = time.perf_counter() - started
        try:
            with self.store.hold(reservation):
                results = [
                    self._execute(item, item_projection, reservation)
                    for item, item_projection in zip(inspected, projections)
                ]
        finally:
            self.store.release(reservation)  # what the run did not spend goes back, failed or not
        mtd = self.store.month_to_date_bytes(self.connection.id, gate.month_of(self.clock()))
        return GateOutcome(
            results,
            fingerprint,
            projection,
            decision,
            approval_id,
            mtd,
            gate.cost_usd(mtd, price),
            budget,
            self.round_trips - trips_before,
            gate_trips,
            gate_seconds,
            len(projections),
        )


class BigQueryResource(DagsterGcpBigQueryResource):
    """dagster-gcp's `BigQueryResource`, kept Dagster-native (config, UI, `dagster-gcp` kind) but with
    credentials from the vault, built in memory, and every query behind the budget gate.

    `project`/`location` are defaults for connections that do not name their own."""

    sandbox_ca_path: str | None = Field(
        default=None, description="Sandbox CA to trust on loopback (sandbox mode only); defaults to the embedded one."
    )
    cap_margin: float = Field(
        default=gate.DEFAULT_CAP_MARGIN,
        ge=0,
        le=1,
        description="maximum_bytes_billed head-room over the rounded dry-run estimate.",
    )
    approval_ttl_hours: float = Field(
        default=168.0, gt=0, description="How long a pending or approved over-budget approval stays usable."
    )
    max_result_rows: int = Field(
        default=MAX_RESULT_ROWS,
        ge=1,
        description="Most rows a metric query may return (a metric aggregates; more means raw rows).",
    )
    reservation_lease_seconds: float = Field(
        default=DEFAULT_RESERVATION_LEASE.total_seconds(),
        gt=0,
        description="Lease of a run's budget reservation, renewed every third of it; a dead run's reservation lapses after it.",
    )

    @field_validator("gcp_credentials")
    @classmethod
    def _no_key_in_config(cls, value: str | None) -> str | None:
        if value is not None:
            raise ValueError(
                "gcp_credentials is refused: dagster-gcp would write the key to a temp file and set "
                "GOOGLE_APPLICATION_CREDENTIALS; keys are uploaded with `dfx bigquery connect` into the vault"
            )
        return value

    def get_client(self):
        """Refused: an ungated client would be a second path around the budget gate."""
        raise ConfigError("BigQueryResource.get_client() is disabled: use gated(platform, connection).run_gated(...)")

    def get_object_to_set_on_execution_context(self) -> Any:
        # dagster-gcp would build an (ungated, default-credentials) client for context.resources here.
        return self

    def sandbox_ca(self, platform: Platform) -> str | None:
        if not platform.settings.sandbox_allowed:
            return None  # production: normal verification only, whatever is configured
        candidate = (
            Path(self.sandbox_ca_path) if self.sandbox_ca_path else platform.settings.sandbox_dir / "sandbox-ca.pem"
        )
        return str(candidate) if candidate.exists() else None

    def gated(
        self, platform: Platform, connection: Connection, *, clock: Callable[[], datetime] | None = None
    ) -> GatedBigQuery:
        """The gated handle for one active BigQuery connection. No request and no key read happen here."""
        if connection.kind != KIND:
            raise ConfigError(f"connection {connection.id} is a {connection.kind} connection, not bigquery")
        if not connection.is_active:
            raise ConnectionInactiveError(
                f"connection {connection.id!r} is {connection.status.value}: no query is sent"
            )
        project = connection.endpoint.get("project") or self.project
        if not project:
            raise ConfigError(f"connection {connection.id} names no BigQuery project")
        connection = connection.model_copy(update={"endpoint": {**connection.endpoint, "project": project}})
        sandbox_allowed = platform.settings.sandbox_allowed
        api_endpoint = check_api_endpoint(connection.endpoint.get("api_endpoint"), sandbox_allowed=sandbox_allowed)
        location = connection.endpoint.get("location") or self.location

        def factory() -> tuple[Any, Any]:
            import json

            key = json.loads(platform.vault.get(connection.secret_ref("service_account_key")).get_secret_value())
            check_token_uri(
                key.get("token_uri"), sandbox_allowed=sandbox_allowed
            )  # before any assertion is signed and sent
            return build_client(
                key, project=project, location=location, api_endpoint=api_endpoint, sandbox_ca=self.sandbox_ca(platform)
            )

        store = BudgetStore(platform.engine, clock or (lambda: datetime.now(UTC)))
        return GatedBigQuery(
            connection,
            store,
            factory,
            margin=self.cap_margin,
            ttl=timedelta(hours=self.approval_ttl_hours),
            clock=clock,
            max_rows=self.max_result_rows,
            lease=timedelta(seconds=self.reservation_lease_seconds),
        )


__all__ = ["AwaitingApproval", "BigQueryResource", "GateOutcome", "GatedBigQuery", "GatedQuery", "QueryResult"]
