"""Write-back: put a computed metric value into the Salesforce fields the customer designated — and
nowhere else (promise P9).

Every write is checked before a request exists: the (object, field) pair must be one of the
connection's designations, describe must say the field is `updateable`, and the record id must look
like a Salesforce id. `If-Unmodified-Since` (when the metric's query started) keeps us from overwriting
a record someone changed while or after we computed. A dry run reports what would be written and sends
nothing.
"""

import re
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import dagster as dg

from dfx_pipelines.connectors.salesforce.resource import SalesforceClient, SalesforceResource
from dfx_pipelines.platform.errors import ConfigError, ConnectorError
from dfx_pipelines.platform.failures import step_errors
from dfx_pipelines.platform.registry import Connection, WriteBackDesignation
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

_RECORD_ID = re.compile(r"^[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?$")


class WriteRefused(ConfigError):
    """A write that is not allowed: the field is not designated, not updateable, or the id is malformed."""


@dataclass(frozen=True)
class PlannedWrite:
    sobject: str
    record_id: str
    field: str
    value: float | None
    computed_at: datetime


@dataclass(frozen=True)
class WriteOutcome:
    sobject: str
    record_id: str
    field: str
    value: float | None
    outcome: str  # written | would-write | conflict | failed
    detail: str = ""


def designation_for(connection: Connection, sobject: str, field: str) -> WriteBackDesignation:
    for designation in connection.write_back:
        if designation.object == sobject and designation.field == field:
            return designation
    raise WriteRefused(
        f"{sobject}.{field} is not a designated write-back field of {connection.id}: refused before any request"
    )


def check_updateable(client: SalesforceClient, sobject: str, field: str) -> None:
    fields = {f["name"]: f for f in client.describe(sobject).get("fields", [])}
    if field not in fields:
        raise WriteRefused(f"{sobject}.{field} does not exist in the org: refused")
    if not fields[field].get("updateable", False):
        raise WriteRefused(f"{sobject}.{field} is not updateable in Salesforce: refused")


def plan_writes(platform: Platform, connection: Connection) -> list[PlannedWrite]:
    """The writes the metric store implies for each designation (latest values, one per record)."""
    planned: dict[tuple[str, str, str], PlannedWrite] = {}
    for designation in connection.write_back:
        for row in platform.metric_store.read(connection_id=connection.id, metric=designation.metric):
            record_id = row["dimensions"].get(designation.record_dimension)
            if row["measure"] != designation.measure or not record_id:
                continue
            key = (designation.object, record_id, designation.field)
            computed_at = row["computed_at"]
            if computed_at.tzinfo is None:  # SQLite drops the zone; the store only ever holds UTC
                computed_at = computed_at.replace(tzinfo=UTC)
            candidate = PlannedWrite(designation.object, record_id, designation.field, row["value"], computed_at)
            if key not in planned or candidate.computed_at >= planned[key].computed_at:
                planned[key] = candidate
    return sorted(planned.values(), key=lambda w: (w.sobject, w.field, w.record_id))


def write_back(
    client: SalesforceClient, connection: Connection, writes: list[PlannedWrite], *, dry_run: bool
) -> list[WriteOutcome]:
    # Everything is checked first: one refused write means no request at all. The local checks run over
    # every write before describe is asked anything, so a bad write late in the list sends nothing either.
    for write in writes:
        designation_for(connection, write.sobject, write.field)
        if not _RECORD_ID.match(write.record_id):
            raise WriteRefused(f"{write.record_id!r} is not a Salesforce record id: refused")
    for sobject, field in sorted({(write.sobject, write.field) for write in writes}):
        check_updateable(client, sobject, field)
    outcomes = []
    for write in writes:
        if dry_run:
            outcomes.append(WriteOutcome(write.sobject, write.record_id, write.field, write.value, "would-write"))
            continue
        try:
            client.update_record(
                write.sobject, write.record_id, {write.field: write.value}, if_unmodified_since=write.computed_at
            )
            outcomes.append(WriteOutcome(write.sobject, write.record_id, write.field, write.value, "written"))
        except ConnectorError as exc:
            outcome = "conflict" if "412" in str(exc) or "PRECONDITION" in str(exc).upper() else "failed"
            outcomes.append(
                WriteOutcome(write.sobject, write.record_id, write.field, write.value, outcome, str(exc)[:200])
            )
    return outcomes


class WriteBackConfig(dg.Config):
    connection_id: str
    dry_run: bool = True  # a person turns this off after reading the dry run's table


@dg.op(tags={"dfx/api": "salesforce"}, pool="salesforce")
def write_designated_fields(
    context: dg.OpExecutionContext, config: WriteBackConfig, platform: PlatformResource, salesforce: SalesforceResource
) -> dg.Output[list[dict]]:
    with step_errors(context):
        # Launched from the launchpad, the run names its connection in its config only: tag it as every
        # other run of the connection is, so the connection's deletion finds it (its output lists record
        # ids and values) through the tag. Before the active check: a refused run names it too.
        connection = platform.get().registry.get(config.connection_id)
        context.instance.add_run_tags(context.run_id, {"dfx/connection": connection.id})
        return _write_designated_fields(config, platform, salesforce)


def _write_designated_fields(
    config: WriteBackConfig, platform: PlatformResource, salesforce: SalesforceResource
) -> dg.Output[list[dict]]:
    services = platform.get()
    connection = platform.active_connection(config.connection_id, "salesforce")
    if not connection.write_back:
        raise WriteRefused(f"{connection.id} has no designated write-back fields")
    client = salesforce.client(services, connection)
    outcomes = write_back(client, connection, plan_writes(services, connection), dry_run=config.dry_run)
    counts = {
        kind: sum(o.outcome == kind for o in outcomes) for kind in ("written", "would-write", "conflict", "failed")
    }
    table = "| object | record | field | value | outcome |\n|---|---|---|---:|---|\n" + "\n".join(
        f"| {o.sobject} | {o.record_id} | {o.field} | {o.value} | {o.outcome} |" for o in outcomes[:100]
    )
    return dg.Output(
        [asdict(o) for o in outcomes],
        metadata={
            **counts,
            "dry_run": config.dry_run,
            "api_calls": client.api_calls,
            "writes": dg.MetadataValue.md(table),
        },
    )


@dg.job(
    tags={"dfx/api": "salesforce"},
    description="Writes computed values to the connection's designated Salesforce fields (dry run by default).",
)
def salesforce_writeback_job() -> None:
    write_designated_fields()
