"""The budget gate's memory in the metric database: bytes billed per connection and calendar month,
and the approvals queue (pending → approved/rejected → used, or expired).

The rules themselves live in `gate.py`; this module only reads and writes rows. Using an approval is a
compare-and-set (`status = 'approved'` → `'used'`) so two runs can never both spend one approval.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, fields
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.gate import ApprovalInvalid, ApprovalState, ApprovalStatus
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.redaction import redact

DEFAULT_APPROVAL_TTL = timedelta(days=7)
SQL_EXCERPT_CHARS = 4000


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
        return value.replace(tzinfo=timezone.utc)
    return value


@dataclass(frozen=True)
class ApprovalRecord:
    id: str
    connection_id: str
    fingerprint: str
    sql_excerpt: str
    queries: int
    projected_bytes: int
    projected_billed_bytes: int
    cap_bytes: int
    projected_cost_usd: float
    month_to_date_usd: float
    budget_usd: float | None
    asset: str
    partition: str
    status: ApprovalStatus
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    decided_by: str | None = None
    used_at: datetime | None = None
    used_by_run: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> "ApprovalRecord":
        values = {f.name: row[f.name] for f in fields(cls)}
        values["status"] = ApprovalStatus(values["status"])
        for name in ("created_at", "expires_at", "decided_at", "used_at"):
            values[name] = _aware(values[name])
        return cls(**values)

    def state(self) -> ApprovalState:
        return ApprovalState(self.id, self.connection_id, self.fingerprint, self.status, self.expires_at, self.cap_bytes)

    def effective_status(self, now: datetime) -> ApprovalStatus:
        return gate.effective_status(self.state(), now)

    def metadata(self) -> dict[str, Any]:
        """What a person needs to decide, for Dagster metadata and `dfx bigquery list --json`."""
        return {
            "approval_id": self.id,
            "connection": self.connection_id,
            "status": self.status.value,
            "fingerprint": self.fingerprint,
            "queries": self.queries,
            "projected_bytes": self.projected_bytes,
            "projected_billed_bytes": self.projected_billed_bytes,
            "projected_cost_usd": round(self.projected_cost_usd, 6),
            "month_to_date_usd": round(self.month_to_date_usd, 6),
            "monthly_budget_usd": self.budget_usd,
            "asset": self.asset,
            "partition": self.partition,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "decided_by": self.decided_by,
        }


class BudgetStore:
    """Ledger and approvals for every BigQuery connection, in the metric database."""

    def __init__(self, engine: sa.Engine, clock: Callable[[], datetime] = utcnow):
        self.engine = engine
        self.clock = clock

    # ------------------------------------------------------------ ledger

    def month_to_date_bytes(self, connection_id: str, month: str | None = None) -> int:
        month = month or gate.month_of(self.clock())
        ledger = tables.bigquery_ledger
        with self.engine.connect() as db:
            value = db.execute(
                sa.select(ledger.c.bytes_billed).where(ledger.c.connection_id == connection_id, ledger.c.month == month)
            ).scalar()
        return int(value or 0)

    def ledger(self, connection_id: str) -> list[dict[str, Any]]:
        ledger = tables.bigquery_ledger
        with self.engine.connect() as db:
            rows = db.execute(sa.select(ledger).where(ledger.c.connection_id == connection_id).order_by(ledger.c.month)).mappings()
            return [dict(row) for row in rows]

    def record_job(self, connection_id: str, bytes_billed: int, month: str | None = None) -> None:
        """Add one executed job's real `totalBytesBilled` to the month, atomically (an upsert, so
        concurrent runs add up instead of overwriting each other)."""
        if bytes_billed < 0:
            raise ValueError("bytes billed must not be negative")
        month = month or gate.month_of(self.clock())
        ledger = tables.bigquery_ledger
        values = {"connection_id": connection_id, "month": month, "bytes_billed": bytes_billed, "jobs": 1, "updated_at": self.clock()}
        dialect = self.engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        if dialect not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"the BigQuery ledger supports PostgreSQL and SQLite, not {dialect}")
        statement = insert(ledger).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[ledger.c.connection_id, ledger.c.month],
            set_={
                "bytes_billed": ledger.c.bytes_billed + statement.excluded.bytes_billed,
                "jobs": ledger.c.jobs + 1,
                "updated_at": statement.excluded.updated_at,
            },
        )
        with self.engine.begin() as db:
            db.execute(statement)

    # ------------------------------------------------------------ approvals

    def get(self, approval_id: str) -> ApprovalRecord:
        record = self.find(approval_id)
        if record is None:
            raise ApprovalInvalid(f"no BigQuery approval {approval_id!r}")
        return record

    def find(self, approval_id: str) -> ApprovalRecord | None:
        approvals = tables.bigquery_approvals
        with self.engine.connect() as db:
            row = db.execute(sa.select(approvals).where(approvals.c.id == approval_id)).mappings().first()
        return ApprovalRecord.from_row(row) if row else None

    def list(self, *, connection_id: str | None = None, statuses: Iterable[ApprovalStatus] | None = None) -> list[ApprovalRecord]:
        """Approvals with their *effective* status (a lapsed one reads as expired)."""
        self.expire_stale()
        approvals = tables.bigquery_approvals
        query = sa.select(approvals).order_by(approvals.c.created_at, approvals.c.id)
        if connection_id is not None:
            query = query.where(approvals.c.connection_id == connection_id)
        if statuses is not None:
            query = query.where(approvals.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as db:
            return [ApprovalRecord.from_row(row) for row in db.execute(query).mappings()]

    def expire_stale(self) -> int:
        """Mark lapsed pending/approved approvals expired, so lists and the sensor agree with the rules."""
        approvals = tables.bigquery_approvals
        with self.engine.begin() as db:
            return db.execute(
                approvals.update()
                .where(approvals.c.status.in_([ApprovalStatus.PENDING.value, ApprovalStatus.APPROVED.value]), approvals.c.expires_at <= self.clock())
                .values(status=ApprovalStatus.EXPIRED.value)
            ).rowcount

    def request(
        self,
        *,
        connection_id: str,
        fingerprint: str,
        sql: str,
        queries: int,
        projection: gate.Projection,
        decision: gate.BudgetDecision,
        asset: str,
        partition: str,
        ttl: timedelta = DEFAULT_APPROVAL_TTL,
    ) -> ApprovalRecord:
        """A pending approval for this work, or the one already pending for the same query: asking
        twice (a retried run, a second click) does not queue the same decision twice."""
        now = self.clock()
        approvals = tables.bigquery_approvals
        with self.engine.begin() as db:
            existing = db.execute(
                sa.select(approvals).where(
                    approvals.c.connection_id == connection_id,
                    approvals.c.fingerprint == fingerprint,
                    approvals.c.status == ApprovalStatus.PENDING.value,
                    approvals.c.expires_at > now,
                )
            ).mappings().first()
            if existing is not None:
                return ApprovalRecord.from_row(existing)
            values = {
                "id": "bqa-" + secrets.token_hex(6),
                "connection_id": connection_id,
                "fingerprint": fingerprint,
                # Metric SQL carries identifiers and @parameters only; anything else is redacted and cut.
                "sql_excerpt": redact(sql)[:SQL_EXCERPT_CHARS],
                "queries": queries,
                "projected_bytes": projection.bytes_processed,
                "projected_billed_bytes": projection.billed_bytes,
                "cap_bytes": projection.cap_bytes,
                "projected_cost_usd": projection.cost_usd,
                "month_to_date_usd": decision.month_to_date_usd,
                "budget_usd": decision.budget_usd,
                "asset": asset[:300],
                "partition": partition[:300],
                "status": ApprovalStatus.PENDING.value,
                "created_at": now,
                "expires_at": now + ttl,
            }
            db.execute(approvals.insert().values(**values))
        return self.get(values["id"])

    def _decide(self, approval_id: str, status: ApprovalStatus, decided_by: str) -> ApprovalRecord:
        now = self.clock()
        gate.check_decidable(self.get(approval_id).state(), now)
        approvals = tables.bigquery_approvals
        with self.engine.begin() as db:
            changed = db.execute(
                approvals.update()
                .where(approvals.c.id == approval_id, approvals.c.status == ApprovalStatus.PENDING.value, approvals.c.expires_at > now)
                .values(status=status.value, decided_at=now, decided_by=decided_by[:200])
            ).rowcount
        if changed != 1:  # decided (or lapsed) by someone else between the check and the update
            raise ApprovalInvalid(f"approval {approval_id} is no longer pending")
        return self.get(approval_id)

    def approve(self, approval_id: str, decided_by: str) -> ApprovalRecord:
        return self._decide(approval_id, ApprovalStatus.APPROVED, decided_by)

    def reject(self, approval_id: str, decided_by: str) -> ApprovalRecord:
        return self._decide(approval_id, ApprovalStatus.REJECTED, decided_by)

    def consume(self, approval_id: str, *, connection_id: str, fingerprint: str, projected_billed: int, run_id: str | None = None) -> ApprovalRecord:
        """Spend an approval on the query it was given for: checked by the rules, then marked used in
        one compare-and-set, before the query is sent (single use even if the run dies mid-way)."""
        now = self.clock()
        record = self.get(approval_id)
        gate.check_usable(record.state(), connection_id=connection_id, fingerprint=fingerprint, projected_billed=projected_billed, now=now)
        approvals = tables.bigquery_approvals
        with self.engine.begin() as db:
            changed = db.execute(
                approvals.update()
                .where(approvals.c.id == approval_id, approvals.c.status == ApprovalStatus.APPROVED.value, approvals.c.expires_at > now)
                .values(status=ApprovalStatus.USED.value, used_at=now, used_by_run=run_id)
            ).rowcount
        if changed != 1:
            raise ApprovalInvalid(f"approval {approval_id} was already used: approvals are single-use")
        return self.get(approval_id)

    # ------------------------------------------------------------ removal

    def delete_connection(self, connection_id: str) -> dict[str, int]:
        """A removed connection's approvals (their SQL excerpts) and ledger rows, in one transaction."""
        approvals, ledger = tables.bigquery_approvals, tables.bigquery_ledger
        with self.engine.begin() as db:
            deleted_approvals = db.execute(approvals.delete().where(approvals.c.connection_id == connection_id)).rowcount
            deleted_ledger = db.execute(ledger.delete().where(ledger.c.connection_id == connection_id)).rowcount
        return {"bigquery_approvals": deleted_approvals, "bigquery_ledger": deleted_ledger}
