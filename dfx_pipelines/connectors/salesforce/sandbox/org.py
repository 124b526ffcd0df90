"""`SalesforceOrg`: the sandbox org's data — generated from a seed into in-memory SQLite — plus writes and CDC.

One table per queryable object (columns named after the fields), a `_deleted_log` for getDeleted, and a
clock (`now`, `advance`) that every timestamp comes from. A delete does what it does in Salesforce
(`cascade`: children to the Recycle Bin with it, or DELETE_FAILED), for seeded deletes too. All access
goes through one lock because the HTTPS server answers on several threads.
"""

from __future__ import annotations

import queue
import random
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .cascade import DeletePlan, indexed_references, plan_delete
from .clock import SandboxClock
from .derived import HISTORY_TRIGGERS, derive, opportunity_history_row
from .errors import SalesforceApiError, not_found
from .generate import OrgGenerator, OrgSizes
from .ids import make_id, to_18
from .schema import KEY_PREFIXES, OBJECTS, STAGE_INFO, STORED_OBJECTS, ObjectDef, find_object
from .values import api_datetime, coerce_for_write, json_value, load_datetime, store_datetime

DEFAULT_ID_LIMIT = 600_000
ORG_ID = "00D8d000000dFxSEAU"


@dataclass
class MutationSummary:
    """What `mutate` did, by object: the ids created, updated and deleted — a delete's cascade included
    (an Account's Opportunities under deleted, lookups it emptied under updated). `total`: the changes made."""

    created: dict[str, list[str]] = field(default_factory=dict)
    updated: dict[str, list[str]] = field(default_factory=dict)
    deleted: dict[str, list[str]] = field(default_factory=dict)
    changes: int = 0

    @property
    def total(self) -> int:
        return self.changes

    def add(self, kind: str, obj: str, ids: list[str]) -> None:
        known = getattr(self, kind).setdefault(obj, [])
        known.extend(record_id for record_id in ids if record_id not in known)

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {
            kind: {obj: len(ids) for obj, ids in getattr(self, kind).items()}
            for kind in ("created", "updated", "deleted")
        }


class SalesforceOrg:
    """A seeded org. `now=None` follows the wall clock; a given `now` freezes the clock until `advance`."""

    def __init__(
        self,
        seed: int = 7,
        opportunities: int = 200,
        now: datetime | None = None,
        *,
        id_limit: int = DEFAULT_ID_LIMIT,
        replication_window: timedelta = timedelta(days=30),
        replication_lag: timedelta = timedelta(minutes=1),
    ):
        self.seed = seed
        self.clock = SandboxClock(now)
        self.id_limit = id_limit
        self.replication_window = replication_window
        self.replication_lag = replication_lag
        self.org_id = ORG_ID
        self.sizes = OrgSizes.for_opportunities(opportunities)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode = OFF")
        self._db.execute("PRAGMA synchronous = OFF")
        self._create_tables()
        self._db.execute("BEGIN")
        generator = self._generate(seed, int(self.clock.now().timestamp()))
        self._db.executemany('INSERT INTO "_deleted_log" VALUES (?, ?, ?)', generator.deleted)
        self._db.execute("COMMIT")
        self._create_indexes()
        self._db.execute("BEGIN")
        self._cascade_generated_deletes(generator.deleted)
        self._db.execute("COMMIT")
        self._next_number = {
            obj.name: self._db.execute(f'SELECT COUNT(*) FROM "{obj.name}"').fetchone()[0] for obj in STORED_OBJECTS
        }
        self.integration_user_id = make_id(OBJECTS["User"].key_prefix or "005", 0)

    # ------------------------------------------------------------ storage

    def _create_tables(self) -> None:
        for obj in STORED_OBJECTS:
            columns = ", ".join(
                f'"{f.name}" {f.sql_type}{" PRIMARY KEY" if f.name == "Id" else ""}' for f in obj.fields
            )
            self._db.execute(f'CREATE TABLE "{obj.name}" ({columns})')
        self._db.execute('CREATE TABLE "_deleted_log" (object TEXT, id TEXT, deleted_date INTEGER)')

    def _create_indexes(self) -> None:
        # getUpdated scans by SystemModstamp; children are looked up by their parent id.
        for obj in STORED_OBJECTS:
            self._db.execute(f'CREATE INDEX "ix_{obj.name}_modstamp" ON "{obj.name}" ("SystemModstamp")')
        self._db.execute('CREATE INDEX "ix_history_opportunity" ON "OpportunityHistory" ("OpportunityId")')
        self._db.execute('CREATE INDEX "ix_deleted_log" ON "_deleted_log" (object, deleted_date)')
        # A delete finds the records that point at the deleted one (cascade, restrict, clear) by these.
        for obj_name, field_name in indexed_references():
            if (obj_name, field_name) != ("OpportunityHistory", "OpportunityId"):
                self._db.execute(f'CREATE INDEX "ix_{obj_name}_{field_name}" ON "{obj_name}" ("{field_name}")')

    def _generate(self, seed: int, now_seconds: int) -> OrgGenerator:
        """Generate on a worker thread while this one inserts: SQLite releases the GIL while it writes, so
        numpy generation and insertion overlap. Chunks arrive in order, so the data stays deterministic."""
        batches: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=3)
        generator = OrgGenerator(lambda obj, columns: batches.put((obj, columns)), seed, self.sizes, now_seconds)

        def produce() -> None:
            try:
                generator.run()
                batches.put(("", None))
            except BaseException as exc:  # noqa: BLE001 - handed to the inserting thread, which raises it
                batches.put(("", exc))

        worker = threading.Thread(target=produce, name="salesforce-sandbox-generate", daemon=True)
        worker.start()
        while True:
            obj, payload = batches.get()
            if not obj:
                worker.join()
                if payload is not None:
                    raise payload
                return generator
            self._insert_columns(obj, payload)

    def _insert_columns(self, obj: str, columns: dict[str, list[Any]]) -> None:
        names = list(columns)
        placeholders = ", ".join("?" * len(names))
        quoted = ", ".join(f'"{name}"' for name in names)
        self._db.executemany(f'INSERT INTO "{obj}" ({quoted}) VALUES ({placeholders})', zip(*columns.values()))

    def run_sql(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:
        """Run one SQL statement against the store (tests use it to count independently of SOQL)."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def count(self, obj: str, *, include_deleted: bool = False) -> int:
        objdef = self._object(obj)
        where = "" if include_deleted else ' WHERE "IsDeleted" = 0'
        return self.run_sql(f'SELECT COUNT(*) FROM "{objdef.name}"{where}')[0][0]

    # ------------------------------------------------------------ clock

    @property
    def now(self) -> datetime:
        return self.clock.now()

    def advance(self, delta: timedelta) -> datetime:
        return self.clock.advance(delta)

    # ------------------------------------------------------------ reads

    def _object(self, obj: str) -> ObjectDef:
        objdef = find_object(obj)
        if objdef is None or not objdef.queryable:
            raise SalesforceApiError(404, "NOT_FOUND", f"The requested resource does not exist: sObject type '{obj}'")
        return objdef

    def _row(self, objdef: ObjectDef, record_id: str) -> dict[str, Any] | None:
        cursor = self._db.execute(f'SELECT * FROM "{objdef.name}" WHERE "Id" = ?', (record_id,))
        row = cursor.fetchone()
        if row is None:
            return None
        return {description[0]: value for description, value in zip(cursor.description, row)}

    def _checked_id(self, objdef: ObjectDef, record_id: str) -> str:
        full = to_18(record_id)
        if full is None or KEY_PREFIXES.get(full[:3]) != objdef.name:
            raise SalesforceApiError(400, "MALFORMED_ID", f"{objdef.label} ID: id value of incorrect type: {record_id}")
        return full

    def get(self, obj: str, record_id: str, *, include_deleted: bool = False) -> dict[str, Any] | None:
        """The stored row (raw values) of one record, or None."""
        objdef = self._object(obj)
        full = to_18(record_id)
        if full is None:
            return None
        with self._lock:
            row = self._row(objdef, full)
        if row is None or (row["IsDeleted"] and not include_deleted):
            return None
        return row

    def record_json(
        self, obj: str, record_id: str, fields: list[str] | None = None, *, version: str = "59.0"
    ) -> dict[str, Any] | None:
        """One live record as the REST API answers it, optionally only some fields."""
        objdef = self._object(obj)
        row = self.get(objdef.name, record_id)
        if row is None:
            return None
        chosen = [objdef.field(name) for name in fields] if fields else list(objdef.fields)
        url = f"/services/data/v{version}/sobjects/{objdef.name}/{row['Id']}"
        out: dict[str, Any] = {"attributes": {"type": objdef.name, "url": url}}
        for f in chosen:
            if f is None:
                continue
            out[f.name] = json_value(f.type, row[f.name])
        return out

    # ------------------------------------------------------------ writes

    def _validated(self, objdef: ObjectDef, fields: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        values: dict[str, Any] = {}
        forbidden: list[str] = []
        for name, value in fields.items():
            if name == "attributes":
                continue
            f = objdef.field(name)
            if f is None:
                raise SalesforceApiError(
                    400, "INVALID_FIELD", f"No such column '{name}' on sobject of type {objdef.name}"
                )
            if not (f.createable if creating else f.updateable):
                forbidden.append(f.name)
                continue
            values[f.name] = value
        if forbidden:
            raise SalesforceApiError(
                400,
                "INVALID_FIELD_FOR_INSERT_UPDATE",
                f"Unable to create/update fields: {', '.join(forbidden)}. Please check the security settings of this "
                "field and verify that it is read/write for your profile or permission set.",
                forbidden,
            )
        return {name: coerce_for_write(objdef.field(name), value) for name, value in values.items()}  # type: ignore[arg-type]

    def _check_references(self, objdef: ObjectDef, values: dict[str, Any]) -> None:
        """A lookup must name a live record of an object it may point at, as in Salesforce: pointing at a
        deleted one is ENTITY_IS_DELETED, at anything else INVALID_CROSS_REFERENCE_KEY."""
        for name, value in values.items():
            f = objdef.field(name)
            if f is None or f.type != "reference" or value is None:
                continue
            full = to_18(str(value))
            target = OBJECTS.get(KEY_PREFIXES.get(full[:3], "")) if full else None
            row = self._row(target, full) if target is not None and target.name in f.reference_to and full else None
            if row is None:
                raise SalesforceApiError(
                    400, "INVALID_CROSS_REFERENCE_KEY", f"invalid cross reference id: {value}", [f.name]
                )
            if row["IsDeleted"]:
                raise SalesforceApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [f.name])

    def create(self, obj: str, fields: dict[str, Any]) -> str:
        objdef = self._object(obj)
        if not objdef.createable:
            raise SalesforceApiError(
                400, "INVALID_TYPE_FOR_OPERATION", f"entity type {objdef.name} does not support create"
            )
        values = self._validated(objdef, fields, creating=True)
        with self._lock:
            self._check_references(objdef, values)
            clock_now = self.now
            now = store_datetime(clock_now)
            number = self._next_number[objdef.name]
            self._next_number[objdef.name] = number + 1
            assert objdef.key_prefix is not None
            record_id = make_id(objdef.key_prefix, number)
            row: dict[str, Any] = {f.name: None for f in objdef.fields}
            row.update(
                Id=record_id, IsDeleted=0, CreatedDate=now, CreatedById=self.integration_user_id, SystemModstamp=now
            )
            if "LastModifiedDate" in row:
                row.update(LastModifiedDate=now, LastModifiedById=self.integration_user_id)
            if "OwnerId" in row:
                row["OwnerId"] = self.integration_user_id
            for f in objdef.fields:
                if f.type == "boolean" and row[f.name] is None:
                    row[f.name] = 0
                if f.auto_number:
                    row[f.name] = f"{number + 1001:08d}"  # the seeded records' numbering, continued
            row.update(values)
            if objdef.name == "Opportunity" and "StageName" in values and "Probability" not in values:
                row["Probability"] = float(STAGE_INFO.get(values["StageName"], ("", 0))[1])
            row.update(derive(objdef.name, row, set(values) | {"StageName", "CloseDate", "Status"}, clock_now))
            missing = [f.name for f in objdef.fields if not f.nillable and f.createable and row.get(f.name) is None]
            if missing:
                raise SalesforceApiError(
                    400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: {missing}", missing
                )
            self._insert_columns(objdef.name, {name: [value] for name, value in row.items()})
            if objdef.name == "Opportunity":
                self._write_history(row, now)
        return record_id

    def update(
        self, obj: str, record_id: str, fields: dict[str, Any], if_unmodified_since: datetime | None = None
    ) -> dict[str, Any]:
        """Apply `fields` to one record; returns the stored values written (derived ones included)."""
        objdef = self._object(obj)
        if not objdef.updateable:
            raise SalesforceApiError(
                400, "INVALID_TYPE_FOR_OPERATION", f"entity type {objdef.name} does not support update"
            )
        full = self._checked_id(objdef, record_id)
        values = self._validated(objdef, fields, creating=False)
        with self._lock:
            row = self._row(objdef, full)
            if row is None:
                raise not_found()
            if row["IsDeleted"]:
                raise SalesforceApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [])
            self._check_references(objdef, values)
            if if_unmodified_since is not None:
                modified = load_datetime(row.get("LastModifiedDate") or row["SystemModstamp"])
                if modified > if_unmodified_since.astimezone(UTC).replace(microsecond=0):
                    raise SalesforceApiError(
                        412, "PRECONDITION_FAILED", "The record was modified after the If-Unmodified-Since date"
                    )
            clock_now = self.now
            now = store_datetime(clock_now)
            changed = {name for name, value in values.items() if row.get(name) != value}
            row.update(values)
            written = dict(values)
            written.update(derive(objdef.name, row, set(values), clock_now))
            written.update(SystemModstamp=now)
            if "LastModifiedDate" in row:
                written.update(LastModifiedDate=now, LastModifiedById=self.integration_user_id)
            row.update(written)
            assignments = ", ".join(f'"{name}" = ?' for name in written)
            self._db.execute(f'UPDATE "{objdef.name}" SET {assignments} WHERE "Id" = ?', [*written.values(), full])
            if objdef.name == "Opportunity" and changed & HISTORY_TRIGGERS:
                self._write_history(row, now)
        return written

    def delete(self, obj: str, record_id: str) -> DeletePlan:
        """Soft delete, as Salesforce does it: the record and what cascades from it (an Account's Contacts and
        Opportunities, their activities, ...) get IsDeleted set (queryAll still sees them) and are logged for
        getDeleted; lookups that pointed at them are emptied; a live Case refuses the delete (DELETE_FAILED).
        Returns what was deleted and emptied."""
        objdef = self._object(obj)
        if not objdef.deletable:
            raise SalesforceApiError(
                400, "INVALID_TYPE_FOR_OPERATION", f"entity type {objdef.name} does not support delete"
            )
        full = self._checked_id(objdef, record_id)
        with self._lock:
            row = self._row(objdef, full)
            if row is None:
                raise not_found()
            if row["IsDeleted"]:
                raise SalesforceApiError(400, "ENTITY_IS_DELETED", "entity is deleted", [])
            plan = plan_delete(self._db, objdef, full)  # raises before anything is written
            self._db.execute("BEGIN")
            try:
                self._apply_delete(plan, store_datetime(self.now))
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return plan

    def _apply_delete(self, plan: DeletePlan, now: int, *, skip: str | None = None) -> None:
        # MAX with CreatedDate: a generated child may be younger than the generated delete of its parent.
        for name, ids in plan.deleted.items():
            has_modified = OBJECTS[name].field("LastModifiedDate") is not None
            extra = ', "LastModifiedDate" = MAX(?, "CreatedDate")' if has_modified else ""
            params = [now, now] if has_modified else [now]
            for record_id in ids:
                if record_id == skip:
                    continue
                self._db.execute(
                    f'UPDATE "{name}" SET "IsDeleted" = 1, "SystemModstamp" = MAX(?, "CreatedDate"){extra} WHERE "Id" = ?',
                    [*params, record_id],
                )
                self._db.execute(
                    f'INSERT INTO "_deleted_log" SELECT ?, "Id", "SystemModstamp" FROM "{name}" WHERE "Id" = ?',
                    (name, record_id),
                )
        for (name, field_name), ids in plan.cleared.items():
            self._db.executemany(
                f'UPDATE "{name}" SET "{field_name}" = NULL, "SystemModstamp" = MAX(?, "SystemModstamp") WHERE "Id" = ?',
                [(now, record_id) for record_id in ids],
            )

    def _cascade_generated_deletes(self, deleted: list[tuple[str, str, int]]) -> None:
        """The generator soft-deletes records one by one; give each delete its consequences, at its own time."""
        for obj, record_id, when in deleted:
            plan = plan_delete(self._db, OBJECTS[obj], record_id)
            self._apply_delete(plan, when, skip=record_id)

    def undelete(self, obj: str, record_id: str) -> None:
        """Restore one soft-deleted record from the recycle bin (not what its delete cascaded to), as
        Salesforce's undelete does: live again, with SystemModstamp (and LastModifiedDate) moved to now."""
        objdef = self._object(obj)
        full = self._checked_id(objdef, record_id)
        with self._lock:
            row = self._row(objdef, full)
            if row is None:
                raise not_found()
            if not row["IsDeleted"]:
                raise SalesforceApiError(400, "UNDELETE_FAILED", "entity is not in the recycle bin", [])
            now = store_datetime(self.now)
            extra = ', "LastModifiedDate" = ?' if objdef.field("LastModifiedDate") is not None else ""
            params = [now, now] if extra else [now]
            self._db.execute(
                f'UPDATE "{objdef.name}" SET "IsDeleted" = 0, "SystemModstamp" = ?{extra} WHERE "Id" = ?',
                [*params, full],
            )

    def purge(self, obj: str, record_id: str) -> None:
        """Empty a deleted record from the recycle bin (or hard-delete it): queryAll no longer sees it, but
        getDeleted still reports its delete, as in Salesforce."""
        objdef = self._object(obj)
        full = self._checked_id(objdef, record_id)
        with self._lock:
            row = self._row(objdef, full)
            if row is None:
                raise not_found()
            if not row["IsDeleted"]:
                self.delete(objdef.name, full)
            self._db.execute(f'DELETE FROM "{objdef.name}" WHERE "Id" = ?', (full,))

    def _write_history(self, row: dict[str, Any], now: int) -> None:
        history = OBJECTS["OpportunityHistory"]
        number = self._next_number[history.name]
        self._next_number[history.name] = number + 1
        values = opportunity_history_row(row)
        values.update(
            Id=make_id(history.key_prefix or "008", number),
            IsDeleted=0,
            CreatedDate=now,
            CreatedById=self.integration_user_id,
            SystemModstamp=now,
        )
        self._insert_columns(history.name, {name: [value] for name, value in values.items()})

    # ------------------------------------------------------------ random activity

    def mutate(self, changes: int, seed: int = 0) -> MutationSummary:
        """`changes` random creates (30%), updates (55%) and deletes (15%) across the main objects, at `now`."""
        from .mutations import random_change  # local: mutations builds on this class

        rng = random.Random(f"{self.seed}:{seed}")
        summary = MutationSummary()
        for _ in range(changes):
            kind, obj, record_id, plan = random_change(self, rng)
            summary.add(kind, obj, [record_id])
            summary.changes += 1
            if plan is not None:
                for name, ids in plan.deleted.items():
                    summary.add("deleted", name, ids)
                for (name, _field), ids in plan.cleared.items():
                    summary.add("updated", name, ids)
        return summary

    def random_id(self, obj: str, rng: random.Random) -> str | None:
        """A random live record of `obj` (by rowid, so it is fast on big tables)."""
        objdef = self._object(obj)
        with self._lock:
            highest = self._db.execute(f'SELECT MAX(rowid) FROM "{objdef.name}"').fetchone()[0]
            if not highest:
                return None
            start = rng.randint(1, highest)
            for low in (start, 1):
                row = self._db.execute(
                    f'SELECT "Id" FROM "{objdef.name}" WHERE rowid >= ? AND "IsDeleted" = 0 ORDER BY rowid LIMIT 1',
                    (low,),
                ).fetchone()
                if row:
                    return row[0]
        return None

    # ------------------------------------------------------------ replication (getUpdated / getDeleted)

    def _replicated(self, obj: str) -> ObjectDef:
        objdef = find_object(obj)
        if objdef is None:
            raise not_found()
        if not objdef.replicateable:
            raise SalesforceApiError(
                400, "INVALID_TYPE_FOR_OPERATION", f"entity type {objdef.name} does not support replication"
            )
        return objdef

    def _replication_window(self, objdef: ObjectDef, start: datetime, end: datetime) -> tuple[int, int, datetime]:
        # Salesforce ignores the seconds of both bounds.
        start_minute = _floor_minute(start)
        end_minute = _floor_minute(end)
        now = self.now
        if end_minute <= start_minute:
            raise SalesforceApiError(400, "INVALID_REPLICATION_DATE", "startDate must chronologically precede endDate")
        if start_minute < _floor_minute(now - self.replication_window):
            raise SalesforceApiError(
                400,
                "INVALID_REPLICATION_DATE",
                f"startDate cannot be more than {self.replication_window.days} days ago",
            )
        covered = max(start_minute, min(end_minute, _floor_minute(now - self.replication_lag)))
        return store_datetime(start_minute), store_datetime(covered), covered

    def updated(self, obj: str, start: datetime, end: datetime) -> dict[str, Any]:
        """getUpdated: ids created or changed in [start, latestDateCovered), not deleted."""
        objdef = self._replicated(obj)
        low, high, covered = self._replication_window(objdef, start, end)
        rows = self.run_sql(
            f'SELECT "Id" FROM "{objdef.name}" WHERE "SystemModstamp" >= ? AND "SystemModstamp" < ? '
            f'AND "IsDeleted" = 0 ORDER BY "SystemModstamp", "Id" LIMIT ?',
            (low, high, self.id_limit + 1),
        )
        if len(rows) > self.id_limit:
            raise _exceeded_id_limit(self.id_limit)
        return {"ids": [row[0] for row in rows], "latestDateCovered": _api_datetime(covered)}

    def deleted(self, obj: str, start: datetime, end: datetime) -> dict[str, Any]:
        """getDeleted: records deleted in [start, latestDateCovered) with their deletedDate."""
        objdef = self._replicated(obj)
        low, high, covered = self._replication_window(objdef, start, end)
        rows = self.run_sql(
            'SELECT id, deleted_date FROM "_deleted_log" WHERE object = ? AND deleted_date >= ? AND deleted_date < ? '
            "ORDER BY deleted_date, id LIMIT ?",
            (objdef.name, low, high, self.id_limit + 1),
        )
        if len(rows) > self.id_limit:
            raise _exceeded_id_limit(self.id_limit)
        earliest = _floor_minute(self.now - self.replication_window)
        return {
            "deletedRecords": [
                {"id": record_id, "deletedDate": api_datetime(load_datetime(when))} for record_id, when in rows
            ],
            "earliestDateAvailable": _api_datetime(earliest),
            "latestDateCovered": _api_datetime(covered),
        }

    def iter_objects(self) -> Iterator[ObjectDef]:
        return iter(STORED_OBJECTS)


def _floor_minute(value: datetime) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(second=0, microsecond=0)


def _api_datetime(value: datetime) -> str:
    return api_datetime(value)


def _exceeded_id_limit(limit: int) -> SalesforceApiError:
    return SalesforceApiError(
        400, "EXCEEDED_ID_LIMIT", f"record limit reached. cannot submit more than {limit} records into this call"
    )
