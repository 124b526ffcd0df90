"""The retention table, enforced: each rule is data (category, where it lives, the timestamp that starts
the clock, the period, delete or anonymise), and a daily Dagster job applies every rule and reports, per
rule, what it removed or anonymised.

Where data lives:
- the pipeline's own stores: Dagster runs with their event logs and compute logs, sensor and schedule
  tick history (run ids, run keys, cursors), the server access-log directory, cached metric results,
  and the vault (credentials);
- configured application tables (`app_data.AppTable`) in the application database.

Two rules only *check* here, because another job owns the destruction and doing it twice from two places
would make the audit lie: credentials (destroyed at once by revocation/removal — this job reports any a
removed connection still has, and fails the run so somebody looks) and, in part, cached metric results
(the deletion job erases removed connections' data; this job deletes only batches whose connection was
removed, or whose workspace closed, at least 30 days ago — the backstop, and the only path for closures).

A rule's `legal_hold` marks its period as a legal *minimum*: data-subject erasure keeps such rows until
the period is over (billing records: 7 years) and says so in its response.
"""

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import dagster as dg
import sqlalchemy as sa

from dfx_pipelines.lifecycle.app_data import DEFAULT_APP_TABLES, AppDatabaseResource, AppTable
from dfx_pipelines.lifecycle.deletion import erase_run
from dfx_pipelines.lifecycle.tick_history import purge_ticks
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.identifiers import sql_identifier
from dfx_pipelines.platform.registry import ConnectionStatus, utcnow
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

Action = Literal["delete", "anonymise", "verify"]
ACCESS_LOG_DIR_ENV = "DFX_ACCESS_LOG_DIR"
LIFECYCLE_TAGS = {"dfx/lifecycle": "privacy"}  # dagster.yaml: lifecycle jobs never run concurrently


@dataclass(frozen=True)
class Period:
    """A retention period in calendar years plus days (7 years is 7 calendar years, leap days included)."""

    years: int = 0
    days: int = 0

    def cutoff(self, now: datetime) -> datetime:
        """The instant before which a clock that started has run out."""
        year = now.year - self.years
        try:
            shifted = now.replace(year=year)
        except ValueError:  # 29 February in a year without one
            shifted = now.replace(year=year, day=28)
        return shifted - timedelta(days=self.days)

    def __str__(self) -> str:
        years = [f"{self.years} year{'s' * (self.years != 1)}"] if self.years else []
        days = [f"{self.days} day{'s' * (self.days != 1)}"] if self.days or not self.years else []
        return " ".join(years + days)


@dataclass(frozen=True)
class PipelineStore:
    """One of the pipeline's own stores: dagster_runs, dagster_ticks, compute_logs, access_logs, metric_cache,
    vault, and sent_notifications (the sync-error emails the pipeline itself sent: email correspondence)."""

    name: Literal[
        "dagster_runs", "dagster_ticks", "compute_logs", "access_logs", "metric_cache", "vault", "sent_notifications"
    ]

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class AppTableLocation:
    """A configured table in the application database."""

    table: str
    key_column: str

    def __post_init__(self) -> None:
        sql_identifier(self.table)
        sql_identifier(self.key_column)

    def __str__(self) -> str:
        return f"app:{self.table}"


@dataclass(frozen=True)
class RetentionRule:
    category: str
    location: PipelineStore | AppTableLocation
    clock_column: str  # app tables: the column; own stores: what starts the clock, for the report
    period: Period
    action: Action = "delete"
    anonymise_columns: tuple[str, ...] = ()
    legal_hold: bool = False  # the period is also a legal minimum: erasure keeps the rows until it ends
    promise: str = ""

    def __post_init__(self) -> None:
        if self.action == "anonymise" and not self.anonymise_columns:
            raise ConfigError(f"{self.category}: an anonymise rule needs anonymise_columns")
        if isinstance(self.location, AppTableLocation):
            for name in (self.clock_column, *self.anonymise_columns):
                sql_identifier(name)


# The product's policy for application data, by category (section 6 of the privacy policy).
APP_POLICY: dict[str, tuple[Period, Action, bool, str]] = {
    "demo_requests": (Period(years=3), "delete", False, "P24"),
    # Anonymised, not deleted: billing records (kept 7 years) still reference the account row.
    "accounts": (Period(years=1), "anonymise", False, "P25"),
    "email_correspondence": (Period(years=3), "delete", False, "P29"),
    "billing_records": (Period(years=7), "delete", True, "P30"),
}

PIPELINE_RULES: tuple[RetentionRule, ...] = (
    RetentionRule(
        "server_access_logs", PipelineStore("access_logs"), "file modified time", Period(days=90), promise="P28"
    ),
    RetentionRule("dagster_run_logs", PipelineStore("dagster_runs"), "run created", Period(days=90), promise="P28"),
    RetentionRule(
        "dagster_compute_logs", PipelineStore("compute_logs"), "file modified time", Period(days=90), promise="P28"
    ),
    RetentionRule("sensor_tick_history", PipelineStore("dagster_ticks"), "tick time", Period(days=90), promise="P28"),
    # The pipeline's own email correspondence (sync-error notices, P35): each row names its recipient, so
    # it is kept as long as the policy keeps correspondence, not for ever.
    RetentionRule(
        "notifications_sent", PipelineStore("sent_notifications"), "sent (queued) at", Period(years=3), promise="P29"
    ),
    RetentionRule(
        "cached_metric_results",
        PipelineStore("metric_cache"),
        "connection removed_at / workspace closed_at",
        Period(days=30),
        promise="P27",
    ),
    RetentionRule(
        "integration_credentials",
        PipelineStore("vault"),
        "connection removed_at",
        Period(days=0),
        action="verify",
        promise="P26",
    ),
)


def product_rules(app_tables: Sequence[AppTable]) -> list[RetentionRule]:
    """The product's retention table over the given application tables (categories without a policy
    get no rule; they are still searched by data-subject requests)."""
    rules = list(PIPELINE_RULES)
    for table in app_tables:
        table.checked()
        if table.category not in APP_POLICY:
            continue
        period, action, hold, promise = APP_POLICY[table.category]
        rules.append(
            RetentionRule(
                table.category,
                AppTableLocation(table.table, table.key_column),
                table.clock_column,
                period,
                action,
                tuple(table.anonymise_columns) if action == "anonymise" else (),
                hold,
                promise,
            )
        )
    return rules


@dataclass
class RuleOutcome:
    category: str
    location: str
    action: str
    period: str
    cutoff: str
    matched: int = 0  # rows/runs/files past the cutoff (dry run: what would be acted on)
    acted: int = 0  # actually deleted / anonymised (0 on a dry run)
    note: str = ""
    violation: bool = False


# ------------------------------------------------------------------------------ appliers


def _app_rule(rule: RetentionRule, engine: sa.Engine, cutoff: datetime, dry_run: bool, out: RuleOutcome) -> None:
    assert isinstance(rule.location, AppTableLocation)
    columns = {rule.location.key_column, rule.clock_column, *rule.anonymise_columns}
    table = sa.table(rule.location.table, *(sa.column(c) for c in sorted(columns)))
    expired = table.c[rule.clock_column] < cutoff  # NULL clock (e.g. a contract still running): never expires
    if rule.action == "anonymise":  # rows already anonymised are not counted (or touched) again
        expired = sa.and_(expired, sa.or_(*(table.c[c].is_not(None) for c in rule.anonymise_columns)))
    with engine.begin() as db:
        out.matched = db.execute(sa.select(sa.func.count()).select_from(table).where(expired)).scalar_one()
        if dry_run or not out.matched:
            return
        if rule.action == "delete":
            out.acted = db.execute(table.delete().where(expired)).rowcount
        else:
            out.acted = db.execute(table.update().where(expired).values(dict.fromkeys(rule.anonymise_columns))).rowcount


def _dagster_runs(instance: dg.DagsterInstance, cutoff: datetime, dry_run: bool, out: RuleOutcome) -> None:
    # Finished runs only: a run still going is never pulled from under its executor.
    old = dg.RunsFilter(
        created_before=cutoff,
        statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED],
    )
    if dry_run:
        out.matched = instance.get_runs_count(filters=old)
        return
    while True:
        # Always the first page: deleted runs drop out of it, so no cursor can skip any.
        records = instance.get_run_records(filters=old, limit=200)
        if not records:
            return
        for record in records:
            run_id = record.dagster_run.run_id
            erase_run(instance, run_id)  # run storage, event log, asset-check results, compute logs
            out.matched += 1
            out.acted += 1


def _old_files(root: Path, cutoff: datetime, dry_run: bool, out: RuleOutcome) -> None:
    limit = cutoff.timestamp()
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file():  # never follow a link out of the directory
            continue
        if path.stat().st_mtime < limit:
            out.matched += 1
            if not dry_run:
                path.unlink(missing_ok=True)
                out.acted += 1


def _compute_log_dir(instance: dg.DagsterInstance) -> Path | None:
    """The local compute-log directory; other managers (S3, GCS) expire logs by their bucket's lifecycle."""
    base = getattr(instance.compute_log_manager, "_base_dir", None)
    return Path(base) if base else None


def _metric_cache(platform: Platform, cutoff: datetime, dry_run: bool, out: RuleOutcome) -> None:
    c, w, b, v = tables.connections, tables.workspaces, tables.metric_batches, tables.metric_values
    expired_connections = (
        sa.select(c.c.id)
        .select_from(c.join(w, c.c.workspace_id == w.c.id))
        .where(sa.or_(c.c.removed_at <= cutoff, w.c.closed_at <= cutoff))
    )
    with platform.engine.connect() as db:
        ids = sorted(
            {
                r[0]
                for r in db.execute(
                    sa.select(b.c.connection_id).where(b.c.connection_id.in_(expired_connections)).distinct()
                )
            }
        )
        out.matched = (
            db.execute(
                sa.select(sa.func.count())
                .select_from(v.join(b, v.c.batch_id == b.c.id))
                .where(b.c.connection_id.in_(ids))
            ).scalar_one()
            if ids
            else 0
        )
    if not dry_run:
        out.acted = sum(platform.metric_store.delete_connection(connection_id) for connection_id in ids)
    out.note = f"{len(ids)} connection(s)" + (f": {', '.join(ids)}" if ids else "")


def _sent_notifications(platform: Platform, cutoff: datetime, dry_run: bool, out: RuleOutcome) -> None:
    n = tables.sent_notifications
    expired = n.c.at < cutoff
    with platform.engine.begin() as db:
        out.matched = db.execute(sa.select(sa.func.count()).select_from(n).where(expired)).scalar_one()
        if out.matched and not dry_run:
            out.acted = db.execute(n.delete().where(expired)).rowcount


def _vault(platform: Platform, out: RuleOutcome) -> None:
    gone = (ConnectionStatus.REVOKED, ConnectionStatus.REMOVED, ConnectionStatus.DELETED)
    held = []
    for connection in platform.registry.list(statuses=gone):
        secrets = platform.vault.backend.names(f"secrets/{connection.workspace_id}/{connection.id}")
        if secrets or platform.vault.data_key_id(connection.workspace_id, connection.id):
            held.append(connection.id)
    out.matched = len(held)
    out.violation = bool(held)
    out.note = (
        ("still held for " + ", ".join(held) + " (revocation should have destroyed them)")
        if held
        else "none held for revoked/removed connections"
    )


def apply_rules(
    rules: Sequence[RetentionRule],
    *,
    platform: Platform,
    instance: dg.DagsterInstance | None,
    app_engine: sa.Engine | None,
    access_log_dir: Path | None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[RuleOutcome]:
    """Apply each rule once and say what it did. Rules whose store is not configured are reported as such."""
    now = now or utcnow()
    outcomes = []
    for rule in rules:
        cutoff = rule.period.cutoff(now)
        out = RuleOutcome(
            rule.category, str(rule.location), rule.action, str(rule.period), cutoff.strftime("%Y-%m-%d %H:%M UTC")
        )
        location = rule.location
        if isinstance(location, AppTableLocation):
            if app_engine is None:
                out.note = "not configured: no application database"
            else:
                _app_rule(rule, app_engine, cutoff, dry_run, out)
        elif location.name == "dagster_runs":
            if instance is None:
                out.note = "not configured: no Dagster instance"
            else:
                _dagster_runs(instance, cutoff, dry_run, out)
        elif location.name == "dagster_ticks":
            if instance is None:
                out.note = "not configured: no Dagster instance"
            else:
                out.matched = purge_ticks(instance, cutoff, dry_run=True)
                out.acted = 0 if dry_run else purge_ticks(instance, cutoff, dry_run=False)
        elif location.name == "compute_logs":
            root = _compute_log_dir(instance) if instance is not None else None
            if root is None or not root.is_dir():
                out.note = "no local compute-log directory"
            else:
                _old_files(root, cutoff, dry_run, out)
        elif location.name == "access_logs":
            if access_log_dir is None:
                out.note = f"not configured: set {ACCESS_LOG_DIR_ENV}"
            elif not access_log_dir.is_dir():
                out.note = f"access-log directory {access_log_dir} does not exist"
            else:
                _old_files(access_log_dir, cutoff, dry_run, out)
        elif location.name == "metric_cache":
            _metric_cache(platform, cutoff, dry_run, out)
        elif location.name == "sent_notifications":
            _sent_notifications(platform, cutoff, dry_run, out)
        elif location.name == "vault":
            _vault(platform, out)
        outcomes.append(out)
    return outcomes


def report_markdown(outcomes: Sequence[RuleOutcome], dry_run: bool) -> str:
    verb = "would act on" if dry_run else "removed/anonymised"
    lines = [
        f"| category | location | action | period | cutoff | past cutoff | {verb} | note |",
        "|---|---|---|---|---|---:|---:|---|",
    ]
    for o in outcomes:
        lines.append(
            f"| {o.category} | {o.location} | {o.action} | {o.period} | {o.cutoff} | {o.matched} | {o.acted} | {o.note} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------ Dagster


class RetentionConfig(dg.Config):
    dry_run: bool = False  # count what each rule would remove, change nothing
    access_log_dir: str | None = None  # unset: DFX_ACCESS_LOG_DIR; neither: that rule reports "not configured"


@dg.op(tags=LIFECYCLE_TAGS)
def apply_retention_rules(
    context: dg.OpExecutionContext, config: RetentionConfig, platform: PlatformResource, app_db: AppDatabaseResource
) -> dg.Output[list]:
    started = time.monotonic()
    services = platform.get()
    app_tables = app_db.checked_tables()  # every configured name validated before anything is touched
    app_engine = app_db.engine() if app_db.resolved_url() else None
    if app_engine is None and services.settings.mode == "production":
        raise ConfigError("production needs the application database (DFX_APP_DB_URL) for the retention rules over it")
    log_dir = config.access_log_dir or os.environ.get(ACCESS_LOG_DIR_ENV)
    outcomes = apply_rules(
        product_rules(app_tables),
        platform=services,
        instance=context.instance,
        app_engine=app_engine,
        access_log_dir=Path(log_dir) if log_dir else None,
        dry_run=config.dry_run,
    )
    for o in outcomes:
        context.log.info(
            f"{o.category}: {o.matched} past cutoff {o.cutoff}, {o.acted} {o.action}d{' (dry run)' if config.dry_run else ''} {o.note}"
        )
    metadata: dict = {o.category: o.acted if not config.dry_run else o.matched for o in outcomes}
    metadata.update(
        dry_run=config.dry_run,
        report=dg.MetadataValue.md(report_markdown(outcomes, config.dry_run)),
        seconds=round(time.monotonic() - started, 3),
    )
    violations = [o for o in outcomes if o.violation]
    if violations:
        names = "; ".join(f"{o.category}: {o.note}" for o in violations)
        context.log.error(f"RETENTION VIOLATION: {names}")
        raise dg.Failure(description=f"retention promise broken: {names}", metadata=metadata, allow_retries=False)
    return dg.Output([asdict(o) for o in outcomes], metadata=metadata)


@dg.job(
    tags=LIFECYCLE_TAGS,
    description="Applies the retention table (logs, cached metrics, application tables) and reports per rule what it removed.",
)
def retention_job() -> None:
    apply_retention_rules()


retention_schedule = dg.ScheduleDefinition(
    name="retention_schedule",
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    job=retention_job,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: applies every retention rule.",
)

RETENTION_JOBS = [retention_job]
RETENTION_SCHEDULES = [retention_schedule]
DEFAULT_RULES = product_rules(DEFAULT_APP_TABLES)  # the product's table, for docs and the report
