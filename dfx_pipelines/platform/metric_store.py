"""Aggregated results and where they came from. Nothing raw is ever written here.

A write replaces the whole batch for one (connection, metric, partition) in one transaction, so a rerun
or a retried run never duplicates rows and a failed write leaves the previous batch intact. Each batch
carries its provenance: the run, when it was computed, the query or API calls that produced it, and how
many records and bytes were read.

A batch of a daily partition may carry its `RecordBucket`: the ids of the source records that fell on
that day. It replaces the day's previous bucket in the same transaction as the values, so the index
always describes exactly the values stored; change-data capture reads it (`buckets_of`) to find the day a
changed, cleared or deleted record was counted in before. Ids and days only, never field values; deleted
with the connection. A bucket may instead be patched (ids added and removed) by a run that read only the
records changed since its mark (`BucketMark`: the instant it is complete as of), in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from dfx_pipelines.platform import tables
from dfx_pipelines.platform.db import inserted_id
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.metric_rows import MetricRow
from dfx_pipelines.platform.registry import Connection, utcnow


@dataclass(frozen=True)
class Provenance:
    run_id: str | None
    source: str  # the SOQL/SQL/JQL issued, or a short description of the API calls
    api_calls: int | None = None
    records_read: int | None = None
    bytes_read: int | None = None
    computed_at: datetime | None = None


@dataclass(frozen=True)
class BucketMark:
    """What a stored bucket is complete as of: every record on its day that has not changed since `as_of`
    (the source's clock) is in it. `rebuilt_at`: when its ids were last read in full; `source`: a digest of
    the query its changes are read with (a bucket is patched only by the same query)."""

    as_of: datetime
    rebuilt_at: datetime
    source: str


@dataclass(frozen=True)
class RecordBucket:
    """The source records a daily batch counted on its day (ids only).

    Either the day's whole bucket (`record_ids`, replacing the stored one), or, with `patch`, a change to
    the stored one: `record_ids` added and `removed` taken out. With a `mark` the bucket is complete as of
    its instant (an incremental refresh may patch it later); without one, a later run reads it in full."""

    day: date
    record_ids: frozenset[str]
    removed: frozenset[str] = frozenset()
    patch: bool = False
    mark: BucketMark | None = None


_MAX_RECORD_ID = 64  # the column's width; a source id longer than this is refused before writing
_ID_CHUNK = 500  # ids per IN (...) when looking buckets up
_MAX_SOURCE = 64  # a mark's source digest column width


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes for timezone columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class WriteSummary:
    connection_id: str
    metric: str
    partition_key: str
    rows_written: int
    rows_replaced: int


def _check_value(row: MetricRow) -> float | None:
    if row.value is None:
        return None
    value = float(row.value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ConfigError(f"metric {row.metric}.{row.measure} produced a non-finite value {row.value!r}")
    return value


class MetricStore:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def write(
        self,
        connection: Connection,
        metric: str,
        partition_key: str,
        rows: Sequence[MetricRow],
        provenance: Provenance,
        bucket: RecordBucket | None = None,
    ) -> WriteSummary:
        values = [
            {
                "period": row.period,
                "measure": row.measure,
                "dimensions": json.dumps(dict(row.dimensions), sort_keys=True),
                "value": _check_value(row),
            }
            for row in rows
        ]  # validated before the transaction opens: nothing half-written
        for row in rows:
            if row.metric != metric:
                raise ConfigError(f"row of metric {row.metric!r} written as {metric!r}")
        if bucket is not None:
            if bucket.removed and not bucket.patch:
                raise ConfigError(f"record bucket of {metric} removes ids but replaces the whole bucket")
            if bucket.mark is not None and len(bucket.mark.source) > _MAX_SOURCE:
                raise ConfigError(f"record bucket mark of {metric} has a source digest over {_MAX_SOURCE} characters")
            ids = bucket.record_ids | bucket.removed
            bad = [r for r in ids if not isinstance(r, str) or not r or len(r) > _MAX_RECORD_ID]
            if bad:
                raise ConfigError(f"record bucket of {metric} holds {len(bad)} malformed record id(s)")
        batches, vals = tables.metric_batches, tables.metric_values
        with self.engine.begin() as db:
            old_ids = [
                r.id
                for r in db.execute(
                    sa.select(batches.c.id).where(
                        batches.c.connection_id == connection.id,
                        batches.c.metric == metric,
                        batches.c.partition_key == partition_key,
                    )
                )
            ]
            replaced = 0
            if old_ids:
                replaced = db.execute(vals.delete().where(vals.c.batch_id.in_(old_ids))).rowcount
                db.execute(batches.delete().where(batches.c.id.in_(old_ids)))
            batch_id = inserted_id(
                db.execute(
                    batches.insert().values(
                        workspace_id=connection.workspace_id,
                        connection_id=connection.id,
                        metric=metric,
                        partition_key=partition_key,
                        run_id=provenance.run_id,
                        computed_at=provenance.computed_at or utcnow(),
                        source=provenance.source,
                        api_calls=provenance.api_calls,
                        records_read=provenance.records_read,
                        bytes_read=provenance.bytes_read,
                        row_count=len(values),
                    )
                )
            )
            if values:
                db.execute(vals.insert(), [{**value, "batch_id": batch_id} for value in values])
            if bucket is not None:
                self._replace_bucket(db, connection.id, metric, bucket)
        return WriteSummary(connection.id, metric, partition_key, len(values), replaced)

    @staticmethod
    def _replace_bucket(db: sa.Connection, connection_id: str, metric: str, bucket: RecordBucket) -> None:
        buckets, marks = tables.metric_record_buckets, tables.metric_bucket_marks
        of_day = (buckets.c.connection_id == connection_id, buckets.c.metric == metric, buckets.c.day == bucket.day)
        if bucket.patch:
            # Added ids are deleted first too: a patch applied twice (a retried write) stays one patch.
            touched = sorted(bucket.record_ids | bucket.removed)
            for start in range(0, len(touched), _ID_CHUNK):
                db.execute(buckets.delete().where(*of_day, buckets.c.record_id.in_(touched[start : start + _ID_CHUNK])))
        else:
            db.execute(buckets.delete().where(*of_day))
        db.execute(
            marks.delete().where(
                marks.c.connection_id == connection_id, marks.c.metric == metric, marks.c.day == bucket.day
            )
        )
        if bucket.mark is not None:
            db.execute(
                marks.insert().values(
                    connection_id=connection_id,
                    metric=metric,
                    day=bucket.day,
                    as_of=bucket.mark.as_of,
                    rebuilt_at=bucket.mark.rebuilt_at,
                    source=bucket.mark.source,
                )
            )
        if bucket.record_ids:
            db.execute(
                buckets.insert(),
                [
                    {"connection_id": connection_id, "metric": metric, "day": bucket.day, "record_id": r}
                    for r in sorted(bucket.record_ids)
                ],
            )

    def buckets_of(
        self, connection_id: str, record_ids: Iterable[str], metrics: Iterable[str] | None = None
    ) -> dict[str, set[date]]:
        """Per metric, the days on which stored batches counted any of these records."""
        buckets = tables.metric_record_buckets
        ids = sorted(set(record_ids))
        wanted = None if metrics is None else sorted(set(metrics))
        found: dict[str, set[date]] = {}
        with self.engine.connect() as db:
            for start in range(0, len(ids), _ID_CHUNK):
                query = (
                    sa.select(buckets.c.metric, buckets.c.day)
                    .distinct()
                    .where(
                        buckets.c.connection_id == connection_id,
                        buckets.c.record_id.in_(ids[start : start + _ID_CHUNK]),
                    )
                )
                if wanted is not None:
                    query = query.where(buckets.c.metric.in_(wanted))
                for metric, day in db.execute(query):
                    found.setdefault(metric, set()).add(day)
        return found

    def bucket_marks(self, connection_id: str, metric: str, days: Iterable[date]) -> dict[date, BucketMark]:
        """The marks of these days' stored buckets (a day without one is absent: its bucket, if any, predates
        marks or was written without one, and is to be read in full)."""
        marks = tables.metric_bucket_marks
        wanted = sorted(set(days))
        found: dict[date, BucketMark] = {}
        if not wanted:
            return found
        query = sa.select(marks.c.day, marks.c.as_of, marks.c.rebuilt_at, marks.c.source).where(
            marks.c.connection_id == connection_id,
            marks.c.metric == metric,
            marks.c.day >= wanted[0],
            marks.c.day <= wanted[-1],
        )
        with self.engine.connect() as db:
            for day, as_of, rebuilt_at, source in db.execute(query):
                if day in wanted:
                    found[day] = BucketMark(_aware(as_of), _aware(rebuilt_at), source)
        return found

    def bucket_members(
        self, connection_id: str, metric: str, days: Iterable[date], record_ids: Iterable[str]
    ) -> dict[date, set[str]]:
        """Which of these records the metric's stored buckets of these days hold, per day."""
        buckets = tables.metric_record_buckets
        ids, wanted = sorted(set(record_ids)), sorted(set(days))
        found: dict[date, set[str]] = {}
        if not ids or not wanted:
            return found
        with self.engine.connect() as db:
            for start in range(0, len(ids), _ID_CHUNK):
                query = sa.select(buckets.c.day, buckets.c.record_id).where(
                    buckets.c.connection_id == connection_id,
                    buckets.c.metric == metric,
                    buckets.c.day >= wanted[0],
                    buckets.c.day <= wanted[-1],
                    buckets.c.record_id.in_(ids[start : start + _ID_CHUNK]),
                )
                for day, record_id in db.execute(query):
                    if day in wanted:
                        found.setdefault(day, set()).add(record_id)
        return found

    def bucket_count(self, connection_id: str | None = None) -> int:
        """How many (metric, day, record) entries the index holds (for deletion checks and reports)."""
        buckets = tables.metric_record_buckets
        query = sa.select(sa.func.count()).select_from(buckets)
        if connection_id is not None:
            query = query.where(buckets.c.connection_id == connection_id)
        with self.engine.connect() as db:
            return int(db.execute(query).scalar_one())

    def read(
        self,
        *,
        connection_id: str | None = None,
        metric: str | None = None,
        partition_key: str | None = None,
        period_from: date | None = None,
        period_to: date | None = None,
    ) -> list[dict[str, Any]]:
        batches, vals = tables.metric_batches, tables.metric_values
        query = (
            sa.select(
                batches.c.workspace_id,
                batches.c.connection_id,
                batches.c.metric,
                batches.c.partition_key,
                vals.c.period,
                vals.c.measure,
                vals.c.dimensions,
                vals.c.value,
                batches.c.run_id,
                batches.c.computed_at,
            )
            .select_from(vals.join(batches, vals.c.batch_id == batches.c.id))
            .order_by(batches.c.connection_id, batches.c.metric, vals.c.period, vals.c.measure, vals.c.dimensions)
        )
        if connection_id is not None:
            query = query.where(batches.c.connection_id == connection_id)
        if metric is not None:
            query = query.where(batches.c.metric == metric)
        if partition_key is not None:
            query = query.where(batches.c.partition_key == partition_key)
        if period_from is not None:
            query = query.where(vals.c.period >= period_from)
        if period_to is not None:
            query = query.where(vals.c.period <= period_to)
        with self.engine.connect() as db:
            return [{**row, "dimensions": json.loads(row["dimensions"])} for row in db.execute(query).mappings()]

    def batches(self, connection_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(tables.metric_batches).order_by(tables.metric_batches.c.id)
        if connection_id is not None:
            query = query.where(tables.metric_batches.c.connection_id == connection_id)
        with self.engine.connect() as db:
            return [dict(row) for row in db.execute(query).mappings()]

    def delete_connection(self, connection_id: str) -> int:
        """Every batch, value and record bucket of one connection, in one transaction; returns values deleted."""
        batches, vals = tables.metric_batches, tables.metric_values
        with self.engine.begin() as db:
            for index in (tables.metric_record_buckets, tables.metric_bucket_marks):
                db.execute(index.delete().where(index.c.connection_id == connection_id))
            ids = sa.select(batches.c.id).where(batches.c.connection_id == connection_id).scalar_subquery()
            deleted = db.execute(vals.delete().where(vals.c.batch_id.in_(ids))).rowcount
            db.execute(batches.delete().where(batches.c.connection_id == connection_id))
        return deleted

    def connections_with_data(self) -> Iterable[str]:
        with self.engine.connect() as db:
            return [r[0] for r in db.execute(sa.select(tables.metric_batches.c.connection_id).distinct())]
