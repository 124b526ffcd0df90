"""Runs one query job: parse, bind, resolve, plan, price, enforce `maximumBytesBilled`, then (unless it
is a dry run) execute on DuckDB. Every job, failed or not, lands in the job log."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

import duckdb

from . import errors
from .catalog import Catalog
from .encoding import schema_fields
from .jobs import JobLog, JobRecord
from .pricing import price_query
from .sql import QueryContext, bind_parameters, parse_query, resolve_all, to_duckdb
from .warehouse import Warehouse

UNKNOWN_COLUMN = re.compile(r'Referenced column "?([^"\s]+)"? not found', re.IGNORECASE)


@dataclass(frozen=True)
class QueryRequest:
    project: str
    sql: str
    dry_run: bool = False
    maximum_bytes_billed: int | None = None
    parameters: list[dict[str, Any]] | None = None
    default_dataset: str | None = None
    job_id: str | None = None
    api: str = "jobs.insert"
    principal: str = ""


def new_job_id() -> str:
    return "job_" + uuid.uuid4().hex


def _duckdb_error(exc: duckdb.Error) -> errors.BigQueryError:
    """DuckDB's complaint in BigQuery's words where we know them; the first line otherwise."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    match = UNKNOWN_COLUMN.search(text)
    if match:
        return errors.invalid_query(f"Unrecognized name: {match.group(1)}")
    text = re.sub(r"^[A-Za-z ]+Error: ", "", text)
    return errors.invalid_query(text)


class QueryEngine:
    def __init__(self, catalog: Catalog, warehouse: Warehouse, jobs: JobLog, location: str = "US"):
        self.catalog = catalog
        self.warehouse = warehouse
        self.jobs = jobs
        self.location = location

    def run(self, request: QueryRequest) -> JobRecord:
        job = JobRecord(
            job_id=request.job_id or new_job_id(),
            project=request.project,
            location=self.location,
            sql=request.sql,
            dry_run=request.dry_run,
            api=request.api,
            principal=request.principal,
            maximum_bytes_billed=request.maximum_bytes_billed,
        )
        if self.jobs.get(job.project, job.job_id) is not None:
            raise errors.BigQueryError(
                409, "duplicate", f"Already Exists: Job {job.project}:{job.location}.{job.job_id}"
            )
        try:
            self._run(job, request)
        except errors.BigQueryError as exc:
            exc.__context__ = None  # the log keeps the error, not DuckDB's traceback and frames
            job.error = exc.with_traceback(None)
            job.bytes_processed = job.bytes_billed = 0  # a failed job is not billed
            job.rows = []
        job.ended_ms = int(time.time() * 1000)
        self.jobs.add(job)
        return job

    def _run(self, job: JobRecord, request: QueryRequest) -> None:
        context = QueryContext(request.project, request.default_dataset, self.location)
        tree = bind_parameters(parse_query(request.sql), request.parameters)
        resolve_all(tree, self.catalog, context)  # unknown tables fail before anything is planned
        duck_sql = to_duckdb(tree, self.catalog, context)
        try:
            planned = self.warehouse.describe(duck_sql)
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
        price = price_query(tree, self.catalog, self.warehouse, context)
        job.referenced_tables = price.referenced_tables()
        job.bytes_processed = price.bytes_processed
        job.exact_price = price.exact
        job.schema = schema_fields(planned)
        if request.dry_run:
            job.bytes_billed = 0  # a dry run estimates; nothing runs, nothing is billed
            return
        if request.maximum_bytes_billed is not None and price.bytes_billed > request.maximum_bytes_billed:
            raise errors.bytes_billed_limit_exceeded(request.maximum_bytes_billed, price.bytes_billed)
        try:
            result = self.warehouse.execute(duck_sql)
        except duckdb.Error as exc:
            raise _duckdb_error(exc) from None
        job.executed = True
        job.bytes_billed = price.bytes_billed
        job.schema = schema_fields(result.columns)
        job.rows = result.rows
