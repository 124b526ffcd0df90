"""Data-subject requests (GDPR/CCPA) as records, and what answering each kind does. No Dagster here:
`subject_requests.py` wraps these in jobs and the due-date sensor; a CLI or an admin tool can call them too.

A request is recorded with its received date and its legal due date (GDPR 30 days, CCPA 45 days).
Identity verification is its own recorded step (when, by whom); no action runs before it — an unverified
request is refused with nothing done. Each action writes its answer into the request's `response`:
- access/export: one JSON document of everything held about the subject, by email, across the configured
  application tables and the workspaces they own (registry rows, metric row counts per connection,
  notifications sent to them, earlier requests). Never credentials: only whether some are held.
- erasure: delete or anonymise the subject's rows, *keeping* rows a legal retention period still covers
  (billing records, 7 years) and saying so, with the date they become deletable.
- rectification: update the columns each table allows (`AppTable.rectifiable_columns`).
- restriction / objection: the subject is marked restricted in `subject_restrictions`; the product checks
  `is_restricted` / `connection_restricted` and stops processing (their workspaces' connections are
  excluded from syncs).
Personal data never goes into Dagster run config, tags, logs or metadata: runs carry the request id only.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from dfx_pipelines.lifecycle.app_data import AppTable, email_matches
from dfx_pipelines.lifecycle.retention import product_rules
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.db import inserted_id
from dfx_pipelines.platform.errors import ConfigError, DfxError
from dfx_pipelines.platform.identifiers import sql_identifier
from dfx_pipelines.platform.registry import Connection, utcnow
from dfx_pipelines.platform.restrictions import restricted_workspace_ids
from dfx_pipelines.platform.services import Platform

KINDS = ("access", "erasure", "rectification", "restriction", "objection")
DUE_DAYS = {"gdpr": 30, "ccpa": 45}  # privacy policy section 9 (P33, P34)
NEAR_DUE = timedelta(days=7)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
        return value.replace(tzinfo=UTC)
    return value


class RequestRefused(DfxError):
    """The request may not be acted on (identity not verified, already answered, wrong job): nothing was done."""


@dataclass(frozen=True)
class SubjectRequest:
    id: int
    kind: str
    law: str
    subject_email: str
    received_at: datetime
    due_at: datetime
    identity_verified_at: datetime | None
    identity_verified_by: str | None
    status: str
    completed_at: datetime | None
    request: dict
    response: dict | None

    @classmethod
    def from_row(cls, row: Any) -> "SubjectRequest":
        values = dict(row)
        for key in ("received_at", "due_at", "identity_verified_at", "completed_at"):
            values[key] = _aware(values[key])
        return cls(**values)


def normalise_email(email: str) -> str:
    email = (email or "").strip().lower()
    if "@" not in email or len(email) > 320 or any(c.isspace() for c in email):
        raise ConfigError("a data-subject request needs the subject's email address")
    return email


def record_request(
    engine: sa.Engine,
    kind: str,
    law: str,
    subject_email: str,
    *,
    received_at: datetime | None = None,
    request: dict | None = None,
) -> SubjectRequest:
    """Record a request as received; its due date follows from the law it is made under."""
    if kind not in KINDS:
        raise ConfigError(f"unknown request kind {kind!r}; one of {', '.join(KINDS)}")
    if law not in DUE_DAYS:
        raise ConfigError(f"unknown law {law!r}; one of {', '.join(DUE_DAYS)}")
    received_at = received_at or utcnow()
    with engine.begin() as db:
        request_id = inserted_id(
            db.execute(
                tables.subject_requests.insert().values(
                    kind=kind,
                    law=law,
                    subject_email=normalise_email(subject_email),
                    received_at=received_at,
                    due_at=received_at + timedelta(days=DUE_DAYS[law]),
                    status="received",
                    request=request or {},
                )
            )
        )
    return get_request(engine, request_id)


def get_request(engine: sa.Engine, request_id: int) -> SubjectRequest:
    with engine.connect() as db:
        row = (
            db.execute(sa.select(tables.subject_requests).where(tables.subject_requests.c.id == request_id))
            .mappings()
            .first()
        )
    if row is None:
        raise ConfigError(f"unknown subject request {request_id}")
    return SubjectRequest.from_row(row)


def verify_identity(engine: sa.Engine, request_id: int, by: str, at: datetime | None = None) -> SubjectRequest:
    """Record that the requester's identity was verified (and by whom): the step every action needs."""
    if not by or not by.strip():
        raise ConfigError("identity verification must say who verified it")
    request = get_request(engine, request_id)
    if request.status == "completed":
        raise RequestRefused(f"subject request {request_id} is already completed")
    with engine.begin() as db:
        db.execute(
            tables.subject_requests.update()
            .where(tables.subject_requests.c.id == request_id)
            .values(identity_verified_at=at or utcnow(), identity_verified_by=by.strip(), status="verified")
        )
    return get_request(engine, request_id)


def open_requests(engine: sa.Engine) -> list[SubjectRequest]:
    query = (
        sa.select(tables.subject_requests)
        .where(tables.subject_requests.c.status != "completed")
        .order_by(tables.subject_requests.c.due_at)
    )
    with engine.connect() as db:
        return [SubjectRequest.from_row(row) for row in db.execute(query).mappings()]


def deadline_alerts(
    engine: sa.Engine, now: datetime | None = None, near: timedelta = NEAR_DUE
) -> tuple[list[SubjectRequest], list[SubjectRequest]]:
    """(overdue, due within `near`) among the requests not yet answered."""
    now = now or utcnow()
    pending = open_requests(engine)
    return [r for r in pending if r.due_at <= now], [r for r in pending if now < r.due_at <= now + near]


# ------------------------------------------------------------------------------ restriction


def is_restricted(engine: sa.Engine, email: str) -> bool:
    """Whether processing of this subject's data must stop (restriction or objection on record)."""
    with engine.connect() as db:
        row = db.execute(
            sa.select(tables.subject_restrictions.c.restricted).where(
                tables.subject_restrictions.c.subject_email == normalise_email(email)
            )
        ).first()
    return bool(row and row[0])


def connection_restricted(platform: Platform, connection: Connection) -> bool:
    """The check for sensors, schedules and `active_connection`: skip connections of restricted owners."""
    return connection.workspace_id in restricted_workspace_ids(platform.engine)


# ------------------------------------------------------------------------------ the actions


def _jsonable(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    return value


def _owned_workspaces(platform: Platform, email: str) -> list[dict[str, Any]]:
    w = tables.workspaces
    with platform.engine.connect() as db:
        rows = [
            dict(r)
            for r in db.execute(sa.select(w).where(sa.func.lower(w.c.owner_email) == email).order_by(w.c.id)).mappings()
        ]
    return rows


def _connection_counts(platform: Platform, connection_id: str) -> dict[str, int]:
    b, v = tables.metric_batches, tables.metric_values
    with platform.engine.connect() as db:
        batches = db.execute(
            sa.select(sa.func.count()).select_from(b).where(b.c.connection_id == connection_id)
        ).scalar_one()
        values = db.execute(
            sa.select(sa.func.count())
            .select_from(v.join(b, v.c.batch_id == b.c.id))
            .where(b.c.connection_id == connection_id)
        ).scalar_one()
    return {"metric_batches": batches, "metric_values": values}


def export_subject(
    platform: Platform, app_engine: sa.Engine | None, app_tables: Sequence[AppTable], email: str
) -> dict[str, Any]:
    """Everything held about the subject, as one JSON-ready document (portability, right to know)."""
    email = normalise_email(email)
    document: dict[str, Any] = {
        "subject_email": email,
        "generated_at": utcnow().isoformat(),
        "application_data": {},
        "workspaces": [],
    }
    if app_engine is None:
        document["note"] = "no application database is configured: only the pipeline's own stores were searched"
    else:
        with app_engine.connect() as db:
            for table in app_tables:
                if not table.email_column:
                    continue
                reflected = sa.Table(
                    sql_identifier(table.table), sa.MetaData(), autoload_with=db
                )  # every column they hold
                query = (
                    sa.select(reflected)
                    .where(email_matches(table, reflected, email))
                    .order_by(reflected.c[table.key_column])
                )
                rows = [{k: _jsonable(v) for k, v in row.items()} for row in db.execute(query).mappings()]
                document["application_data"][table.category] = {"table": table.table, "rows": rows}
    for workspace in _owned_workspaces(platform, email):
        entry = {k: _jsonable(v) for k, v in workspace.items()}
        entry["connections"] = []
        for connection in platform.registry.list(workspace_id=workspace["id"]):
            entry["connections"].append(
                {
                    "id": connection.id,
                    "kind": connection.kind,
                    "display_name": connection.display_name,
                    "status": connection.status.value,
                    **{
                        k: _jsonable(getattr(connection, k))
                        for k in ("created_at", "revoked_at", "removed_at", "deleted_at")
                    },
                    "configuration": connection.config_json(),  # what they selected and mapped; holds no secret
                    **_connection_counts(platform, connection.id),
                    # Credentials are never exported, only whether the vault still holds some.
                    "credentials_held": platform.vault.data_key_id(connection.workspace_id, connection.id) is not None,
                }
            )
        document["workspaces"].append(entry)
    n = tables.sent_notifications
    with platform.engine.connect() as db:
        document["notifications_sent"] = [
            {k: _jsonable(v) for k, v in r.items()}
            for r in db.execute(
                sa.select(n.c.run_id, n.c.connection_id, n.c.channels, n.c.at).where(
                    sa.func.lower(n.c.recipient) == email
                )
            ).mappings()
        ]
        s = tables.subject_requests
        document["requests"] = [
            {k: _jsonable(v) for k, v in r.items()}
            for r in db.execute(
                sa.select(s.c.id, s.c.kind, s.c.law, s.c.received_at, s.c.status)
                .where(s.c.subject_email == email)
                .order_by(s.c.id)
            ).mappings()
        ]
    document["restricted"] = is_restricted(platform.engine, email)
    document["found"] = bool(document["workspaces"] or any(t["rows"] for t in document["application_data"].values()))
    return document


def erase_subject(
    platform: Platform,
    app_engine: sa.Engine | None,
    app_tables: Sequence[AppTable],
    email: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Delete or anonymise the subject's rows in one transaction, keeping what a legal period still covers."""
    email, now = normalise_email(email), now or utcnow()
    rules = {r.category: r for r in product_rules(app_tables)}
    erased: dict[str, dict[str, Any]] = {}
    kept: list[dict[str, Any]] = []
    if app_engine is not None:
        with app_engine.begin() as db:  # all tables or none
            for table in app_tables:
                if not table.email_column:
                    continue
                clause = table.sa_table()
                mine = email_matches(table, clause, email)
                rule = rules.get(table.category)
                if rule is not None and rule.legal_hold:
                    cutoff = rule.period.cutoff(now)
                    held = sa.and_(mine, clause.c[table.clock_column] >= cutoff)
                    count, latest = db.execute(
                        sa.select(sa.func.count(), sa.func.max(clause.c[table.clock_column]))
                        .select_from(clause)
                        .where(held)
                    ).one()
                    if count:
                        kept.append(
                            {
                                "category": table.category,
                                "rows": count,
                                "reason": f"legal retention: {table.category.replace('_', ' ')} are kept {rule.period} ({rule.promise}); processing beyond keeping them is stopped",
                                "deletable_from": _jsonable(_plus(latest, rule.period)),
                            }
                        )
                    mine = sa.and_(mine, clause.c[table.clock_column] < cutoff)  # past the legal period: erase
                if rule is not None and rule.action == "anonymise":
                    done = db.execute(
                        clause.update().where(mine).values(dict.fromkeys(table.anonymise_columns))
                    ).rowcount
                    erased[table.category] = {
                        "action": "anonymised",
                        "rows": done,
                        "columns": list(table.anonymise_columns),
                    }
                else:
                    done = db.execute(clause.delete().where(mine)).rowcount
                    erased[table.category] = {"action": "deleted", "rows": done}
    s, n = tables.subject_requests, tables.sent_notifications
    with platform.engine.begin() as db:  # earlier exports held a copy of their data: it goes too
        # The sync-error notices we sent them name their address: our own correspondence, no legal hold.
        sent = db.execute(n.delete().where(sa.func.lower(n.c.recipient) == email)).rowcount
        erased["notifications_sent"] = {"action": "deleted", "rows": sent}
        exports = db.execute(
            s.update()
            .where(s.c.subject_email == email, s.c.kind == "access", s.c.response.is_not(None))
            .values(response={"document": "erased"})
        ).rowcount
    owned = [w["id"] for w in _owned_workspaces(platform, email)]
    found = bool(owned or kept or any(e["rows"] for e in erased.values()))
    response: dict[str, Any] = {
        "found": found,
        "erased": erased,
        "kept": kept,
        "earlier_exports_erased": exports,
        "workspaces_owned": owned,
    }
    if not found:
        response["message"] = (
            f"no data about {email} is held in the configured tables or the registry; nothing was erased"
        )
    if owned:
        response["workspaces_note"] = (
            "the subject owns these workspaces: their connections' cached data is deleted when the "
            "connections are removed (dfx connections remove), which the account owner decides"
        )
    if app_engine is None:
        response["note"] = "no application database is configured: only the pipeline's own stores were searched"
    return response


def _plus(value: Any, period: Any) -> Any:
    """When a legally kept row becomes deletable: its clock plus the period."""
    if value is None:
        return None
    year = value.year + period.years
    try:
        shifted = value.replace(year=year)
    except ValueError:
        shifted = value.replace(year=year, day=28)
    return shifted + timedelta(days=period.days)


def rectify_subject(
    app_engine: sa.Engine | None, app_tables: Sequence[AppTable], email: str, corrections: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Apply `corrections` = {category: {column: new value}}; every column is checked before any change."""
    email = normalise_email(email)
    by_category = {t.category: t for t in app_tables}
    if not corrections:
        raise ConfigError("a rectification request needs corrections: {category: {column: value}}")
    if app_engine is None:
        raise ConfigError("no application database is configured: nothing to rectify")
    for category, changes in corrections.items():
        table = by_category.get(category)
        if table is None or not table.email_column:
            raise ConfigError(f"rectification: unknown category {category!r}")
        for column in changes:
            if sql_identifier(column) not in table.rectifiable_columns:
                raise ConfigError(
                    f"rectification: {category}.{column} may not be changed (allowed: {table.rectifiable_columns})"
                )
    updated = {}
    with app_engine.begin() as db:
        for category, changes in corrections.items():
            table = by_category[category]
            clause = table.sa_table()
            updated[category] = {
                "rows": db.execute(clause.update().where(email_matches(table, clause, email)).values(changes)).rowcount,
                "columns": sorted(changes),
            }
    found = any(u["rows"] for u in updated.values())
    response: dict[str, Any] = {"found": found, "rectified": updated}
    if not found:
        response["message"] = f"no rows about {email} in {', '.join(corrections)}; nothing was changed"
    return response


def restrict_subject(platform: Platform, email: str, request_id: int, reason: str) -> dict[str, Any]:
    email = normalise_email(email)
    r = tables.subject_restrictions
    with platform.engine.begin() as db:
        db.execute(r.delete().where(r.c.subject_email == email))
        db.execute(
            r.insert().values(
                subject_email=email, restricted=True, since=utcnow(), request_id=request_id, reason=reason
            )
        )
    owned = sorted(w["id"] for w in _owned_workspaces(platform, email))
    return {"restricted": True, "reason": reason, "workspaces_excluded_from_processing": owned}


def complete(engine: sa.Engine, request_id: int, response: dict[str, Any]) -> SubjectRequest:
    response = json.loads(json.dumps(response, default=_jsonable))
    with engine.begin() as db:
        db.execute(
            tables.subject_requests.update()
            .where(tables.subject_requests.c.id == request_id)
            .values(status="completed", completed_at=utcnow(), response=response)
        )
    return get_request(engine, request_id)


def check_actionable(request: SubjectRequest, kinds: Sequence[str]) -> None:
    """Refuse, with nothing done, a request that is not this job's, already answered, or unverified."""
    if request.kind not in kinds:
        raise RequestRefused(
            f"subject request {request.id} is a {request.kind} request; this job answers {'/'.join(kinds)}"
        )
    if request.status == "completed":
        raise RequestRefused(
            f"subject request {request.id} was already answered at {request.completed_at:%Y-%m-%d %H:%M} UTC"
        )
    if request.identity_verified_at is None:
        raise RequestRefused(
            f"subject request {request.id} refused: the requester's identity is not verified yet "
            f"(record the verification first); nothing was done"
        )
