"""The budget gate's memory in the metric database: bytes billed per connection and calendar month,
the reservations of runs in progress, and the approvals queue (pending → approved/rejected → used, or
expired).

The rules themselves live in `gate.py`; this module only reads and writes rows. Using an approval is a
compare-and-set (`status = 'approved'` → `'used'`) so two runs can never both spend one approval.

Reservations close the race between deciding and billing: a run's projected bytes are reserved in the
same locked transaction that checks the budget (`SELECT … FOR NO KEY UPDATE` of the connection's row
on PostgreSQL, `BEGIN IMMEDIATE` on SQLite), so concurrent runs of a connection decide one at a time
and each sees the others' reservations. Each job is marked in flight (its `maximum_bytes_billed`)
before it is sent and settled into the ledger with its real bill after; the reservation is released
when the run ends. A reservation is a lease its run renews: one whose owner died (SIGKILL, a lost
machine) lapses and is reaped by the next reservation — its unsent part released, its in-flight jobs
charged at their caps, the most BigQuery can have billed them, so a dead run neither holds budget
forever nor makes the ledger forget spend.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.gate import ApprovalInvalid, ApprovalState, ApprovalStatus, ReservationLapsed
from dfx_pipelines.platform import tables
from dfx_pipelines.platform.redaction import redact

DEFAULT_APPROVAL_TTL = timedelta(days=7)
DEFAULT_RESERVATION_LEASE = timedelta(minutes=5)  # renewed every third of it while the run lives
SQL_EXCERPT_CHARS = 4000

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
        return value.replace(tzinfo=UTC)
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
    def from_row(cls, row: Mapping[Any, Any]) -> ApprovalRecord:
        values = {f.name: row[f.name] for f in fields(cls)}
        values["status"] = ApprovalStatus(values["status"])
        for name in ("created_at", "expires_at", "decided_at", "used_at"):
            values[name] = _aware(values[name])
        return cls(**values)

    def state(self) -> ApprovalState:
        return ApprovalState(
            self.id, self.connection_id, self.fingerprint, self.status, self.expires_at, self.cap_bytes
        )

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


def default_owner(run_id: str | None = None) -> str:
    """Who holds a reservation, for people reading the table (liveness is the lease, not this)."""
    return f"{socket.gethostname()}:{os.getpid()}:{run_id or '-'}"[:200]


@dataclass(frozen=True)
class Reservation:
    """A run's hold on budget: `reserved_bytes` of projected billing in `month`, under a renewable lease."""

    id: str
    connection_id: str
    month: str
    reserved_bytes: int
    lease: timedelta


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
            rows = db.execute(
                sa.select(ledger).where(ledger.c.connection_id == connection_id).order_by(ledger.c.month)
            ).mappings()
            return [dict(row) for row in rows]

    def record_job(self, connection_id: str, bytes_billed: int, month: str | None = None) -> None:
        """Add one executed job's real `totalBytesBilled` to the month, atomically (an upsert, so
        concurrent runs add up instead of overwriting each other)."""
        if bytes_billed < 0:
            raise ValueError("bytes billed must not be negative")
        with self.engine.begin() as db:
            self._add_to_ledger(db, connection_id, month or gate.month_of(self.clock()), bytes_billed, 1)

    def _add_to_ledger(self, db: sa.Connection, connection_id: str, month: str, bytes_billed: int, jobs: int) -> None:
        ledger = tables.bigquery_ledger
        values = {
            "connection_id": connection_id,
            "month": month,
            "bytes_billed": bytes_billed,
            "jobs": jobs,
            "updated_at": self.clock(),
        }
        dialect = self.engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"the BigQuery ledger supports PostgreSQL and SQLite, not {dialect}")
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = insert(ledger).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[ledger.c.connection_id, ledger.c.month],
            set_={
                "bytes_billed": ledger.c.bytes_billed + statement.excluded.bytes_billed,
                "jobs": ledger.c.jobs + statement.excluded.jobs,
                "updated_at": statement.excluded.updated_at,
            },
        )
        db.execute(statement)

    # ------------------------------------------------------------ reservations

    @contextlib.contextmanager
    def _write_transaction(self) -> Iterator[sa.Connection]:
        """A transaction that reads then writes. On SQLite it takes the write lock at BEGIN (IMMEDIATE):
        a deferred one that read first could not upgrade while another writer waits, and would fail
        with "database is locked" instead of waiting its turn."""
        dialect = self.engine.dialect.name
        if dialect not in ("postgresql", "sqlite"):
            raise NotImplementedError(f"BigQuery budget reservations support PostgreSQL and SQLite, not {dialect}")
        with self.engine.connect() as db:
            try:
                if dialect == "sqlite":
                    db.exec_driver_sql("BEGIN IMMEDIATE")
                yield db
            except BaseException:
                db.rollback()
                raise
            db.commit()

    @contextlib.contextmanager
    def _budget_lock(self, connection_id: str) -> Iterator[sa.Connection]:
        """One transaction holding the connection's budget lock: its reservers decide one at a time
        (SQLite: the database write lock of BEGIN IMMEDIATE; PostgreSQL: the connection's row)."""
        with self._write_transaction() as db:
            if self.engine.dialect.name == "postgresql":
                connections = tables.connections
                # NO KEY UPDATE: excludes other reservers, not inserts that merely reference the row.
                db.execute(
                    sa.select(connections.c.id).where(connections.c.id == connection_id).with_for_update(key_share=True)
                )
            yield db

    def _committed_bytes(self, db: sa.Connection, connection_id: str, month: str) -> int:
        """Billed plus reserved, in one statement (one snapshot: a settlement moving bytes from a
        reservation to the ledger is seen entirely or not at all)."""
        ledger, reservations = tables.bigquery_ledger, tables.bigquery_reservations
        billed = (
            sa.select(sa.func.coalesce(sa.func.sum(ledger.c.bytes_billed), 0))
            .where(ledger.c.connection_id == connection_id, ledger.c.month == month)
            .scalar_subquery()
        )
        reserved = (
            sa.select(sa.func.coalesce(sa.func.sum(reservations.c.reserved_bytes), 0))
            .where(reservations.c.connection_id == connection_id, reservations.c.month == month)
            .scalar_subquery()
        )
        return int(db.execute(sa.select(billed + reserved)).scalar() or 0)

    def _reap(self, db: sa.Connection, connection_id: str) -> int:
        """Lapsed reservations (their owner stopped renewing): in-flight jobs charged at their caps, the rest released."""
        reservations = tables.bigquery_reservations
        lapsed = (
            db.execute(
                sa.select(reservations)
                .where(reservations.c.connection_id == connection_id, reservations.c.expires_at <= self.clock())
                .with_for_update()
            )
            .mappings()
            .all()
        )
        for row in lapsed:
            self._close(db, row, why="its lease lapsed (the run died or stalled)")
        return len(lapsed)

    def _close(self, db: sa.Connection, row: Mapping[Any, Any], *, why: str) -> None:
        if row["in_flight_bytes"]:
            # Sent, never settled: the bill is unknown but capped by maximum_bytes_billed; count the cap.
            self._add_to_ledger(
                db, row["connection_id"], row["month"], int(row["in_flight_bytes"]), int(row["in_flight_jobs"])
            )
            log.warning(
                "BigQuery reservation %s of %s closed because %s: %d job(s) in flight charged at their cap of %d bytes",
                row["id"],
                row["connection_id"],
                why,
                row["in_flight_jobs"],
                row["in_flight_bytes"],
            )
        reservations = tables.bigquery_reservations
        db.execute(reservations.delete().where(reservations.c.id == row["id"]))

    def reserve(
        self,
        connection_id: str,
        projection: gate.Projection,
        *,
        budget_usd: float | None,
        price_per_tib_usd: float,
        approved: bool = False,
        owner: str | None = None,
        lease: timedelta = DEFAULT_RESERVATION_LEASE,
        month: str | None = None,
    ) -> tuple[Reservation | None, gate.BudgetDecision]:
        """Decide the budget and, if it allows the run (or a person approved it), reserve its projected
        billing — atomically, so concurrent runs can never all pass on the same head-room. Returns the
        reservation (None when refused) and the decision, whose month-to-date counts billed and reserved."""
        if lease <= timedelta(0):
            raise ValueError("a reservation lease must be positive")
        month = month or gate.month_of(self.clock())
        with self._budget_lock(connection_id) as db:
            self._reap(db, connection_id)
            decision = gate.decide(
                self._committed_bytes(db, connection_id, month), projection, budget_usd, price_per_tib_usd
            )
            if not (decision.allowed or approved):
                return None, decision
            now = self.clock()
            reservation = Reservation(
                "bqr-" + secrets.token_hex(8), connection_id, month, projection.billed_bytes, lease
            )
            db.execute(
                tables.bigquery_reservations.insert().values(
                    id=reservation.id,
                    connection_id=connection_id,
                    month=month,
                    reserved_bytes=projection.billed_bytes,
                    in_flight_bytes=0,
                    in_flight_jobs=0,
                    owner=(owner or default_owner())[:200],
                    created_at=now,
                    expires_at=now + lease,
                )
            )
        return reservation, decision

    def renew(self, reservation: Reservation) -> bool:
        """Extend the lease; False when the reservation is gone (it lapsed and was reaped)."""
        reservations = tables.bigquery_reservations
        with self.engine.begin() as db:
            return (
                db.execute(
                    reservations.update()
                    .where(reservations.c.id == reservation.id)
                    .values(expires_at=self.clock() + reservation.lease)
                ).rowcount
                == 1
            )

    @contextlib.contextmanager
    def hold(self, reservation: Reservation) -> Iterator[None]:
        """Renew the lease every third of it while the block runs (a thread: jobs block for minutes)."""
        stop = threading.Event()

        def renew_until_stopped() -> None:
            while not stop.wait(reservation.lease.total_seconds() / 3):
                try:
                    if not self.renew(reservation):
                        log.warning("BigQuery reservation %s lapsed while its run was alive", reservation.id)
                        return
                except Exception:
                    log.warning("could not renew BigQuery reservation %s", reservation.id, exc_info=True)

        renewer = threading.Thread(target=renew_until_stopped, name=f"renew-{reservation.id}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join()

    def job_sent(self, reservation: Reservation, cap_bytes: int) -> None:
        """Mark a job in flight before it is sent. A lapsed reservation sends nothing more."""
        reservations = tables.bigquery_reservations
        with self.engine.begin() as db:
            changed = db.execute(
                reservations.update()
                .where(reservations.c.id == reservation.id)
                .values(
                    in_flight_bytes=reservations.c.in_flight_bytes + cap_bytes,
                    in_flight_jobs=reservations.c.in_flight_jobs + 1,
                )
            ).rowcount
        if changed != 1:
            raise ReservationLapsed(
                f"the budget reservation {reservation.id} of connection {reservation.connection_id} lapsed (its lease was not "
                "renewed in time) and was released; no further query was sent"
            )

    def settle_job(
        self, reservation: Reservation, *, projected_billed: int, cap_bytes: int, billed: int | None
    ) -> None:
        """A sent job is over: its projection leaves the reservation and its real bill (None: failed
        unbilled) enters the ledger, in one transaction. If the reservation lapsed meanwhile, the
        reaper already charged this job at its cap, so nothing is added twice."""
        reservations = tables.bigquery_reservations
        with self._write_transaction() as db:
            row = db.execute(
                sa.select(reservations.c.id).where(reservations.c.id == reservation.id).with_for_update()
            ).first()
            if row is None:
                log.warning(
                    "BigQuery reservation %s lapsed before its job settled; the job was charged at its cap",
                    reservation.id,
                )
                return
            db.execute(
                reservations.update()
                .where(reservations.c.id == reservation.id)
                .values(
                    reserved_bytes=sa.case(
                        (
                            reservations.c.reserved_bytes > projected_billed,
                            reservations.c.reserved_bytes - projected_billed,
                        ),
                        else_=0,
                    ),
                    in_flight_bytes=sa.case(
                        (reservations.c.in_flight_bytes > cap_bytes, reservations.c.in_flight_bytes - cap_bytes),
                        else_=0,
                    ),
                    in_flight_jobs=sa.case(
                        (reservations.c.in_flight_jobs > 0, reservations.c.in_flight_jobs - 1), else_=0
                    ),
                )
            )
            if billed is not None:
                self._add_to_ledger(db, reservation.connection_id, reservation.month, billed, 1)

    def release(self, reservation: Reservation) -> None:
        """The run is over: what it did not spend goes back; a job still in flight (its bill could not
        be read) is charged at its cap."""
        reservations = tables.bigquery_reservations
        with self._write_transaction() as db:
            row = (
                db.execute(sa.select(reservations).where(reservations.c.id == reservation.id).with_for_update())
                .mappings()
                .first()
            )
            if row is not None:
                self._close(db, row, why="its run ended with a job whose bill is unknown")

    def reservations(self, connection_id: str) -> list[dict[str, Any]]:
        reservations = tables.bigquery_reservations
        with self.engine.connect() as db:
            rows = db.execute(
                sa.select(reservations)
                .where(reservations.c.connection_id == connection_id)
                .order_by(reservations.c.created_at)
            ).mappings()
            return [dict(row) for row in rows]

    def reserved_bytes(self, connection_id: str, month: str | None = None) -> int:
        reservations = tables.bigquery_reservations
        with self.engine.connect() as db:
            value = db.execute(
                sa.select(sa.func.sum(reservations.c.reserved_bytes)).where(
                    reservations.c.connection_id == connection_id,
                    reservations.c.month == (month or gate.month_of(self.clock())),
                )
            ).scalar()
        return int(value or 0)

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

    def list(
        self, *, connection_id: str | None = None, statuses: Iterable[ApprovalStatus] | None = None
    ) -> list[ApprovalRecord]:
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
                .where(
                    approvals.c.status.in_([ApprovalStatus.PENDING.value, ApprovalStatus.APPROVED.value]),
                    approvals.c.expires_at <= self.clock(),
                )
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
            existing = (
                db.execute(
                    sa.select(approvals).where(
                        approvals.c.connection_id == connection_id,
                        approvals.c.fingerprint == fingerprint,
                        approvals.c.status == ApprovalStatus.PENDING.value,
                        approvals.c.expires_at > now,
                    )
                )
                .mappings()
                .first()
            )
            if existing is not None:
                return ApprovalRecord.from_row(existing)
            approval_id = "bqa-" + secrets.token_hex(6)
            values = {
                "id": approval_id,
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
        return self.get(approval_id)

    def _decide(self, approval_id: str, status: ApprovalStatus, decided_by: str) -> ApprovalRecord:
        now = self.clock()
        gate.check_decidable(self.get(approval_id).state(), now)
        approvals = tables.bigquery_approvals
        with self.engine.begin() as db:
            changed = db.execute(
                approvals.update()
                .where(
                    approvals.c.id == approval_id,
                    approvals.c.status == ApprovalStatus.PENDING.value,
                    approvals.c.expires_at > now,
                )
                .values(status=status.value, decided_at=now, decided_by=decided_by[:200])
            ).rowcount
        if changed != 1:  # decided (or lapsed) by someone else between the check and the update
            raise ApprovalInvalid(f"approval {approval_id} is no longer pending")
        return self.get(approval_id)

    def approve(self, approval_id: str, decided_by: str) -> ApprovalRecord:
        return self._decide(approval_id, ApprovalStatus.APPROVED, decided_by)

    def reject(self, approval_id: str, decided_by: str) -> ApprovalRecord:
        return self._decide(approval_id, ApprovalStatus.REJECTED, decided_by)

    def consume(
        self,
        approval_id: str,
        *,
        connection_id: str,
        fingerprint: str,
        projected_billed: int,
        run_id: str | None = None,
    ) -> ApprovalRecord:
        """Spend an approval on the query it was given for: checked by the rules, then marked used in
        one compare-and-set, before the query is sent (single use even if the run dies mid-way)."""
        now = self.clock()
        record = self.get(approval_id)
        gate.check_usable(
            record.state(),
            connection_id=connection_id,
            fingerprint=fingerprint,
            projected_billed=projected_billed,
            now=now,
        )
        approvals = tables.bigquery_approvals
        with self.engine.begin() as db:
            changed = db.execute(
                approvals.update()
                .where(
                    approvals.c.id == approval_id,
                    approvals.c.status == ApprovalStatus.APPROVED.value,
                    approvals.c.expires_at > now,
                )
                .values(status=ApprovalStatus.USED.value, used_at=now, used_by_run=run_id)
            ).rowcount
        if changed != 1:
            raise ApprovalInvalid(f"approval {approval_id} was already used: approvals are single-use")
        return self.get(approval_id)

    # ------------------------------------------------------------ removal

    def delete_connection(self, connection_id: str) -> dict[str, int]:
        """A removed connection's approvals (their SQL excerpts) and ledger rows, in one transaction."""
        approvals, ledger, reservations = (
            tables.bigquery_approvals,
            tables.bigquery_ledger,
            tables.bigquery_reservations,
        )
        with self.engine.begin() as db:
            deleted_approvals = db.execute(
                approvals.delete().where(approvals.c.connection_id == connection_id)
            ).rowcount
            deleted_ledger = db.execute(ledger.delete().where(ledger.c.connection_id == connection_id)).rowcount
            db.execute(reservations.delete().where(reservations.c.connection_id == connection_id))
        return {"bigquery_approvals": deleted_approvals, "bigquery_ledger": deleted_ledger}
