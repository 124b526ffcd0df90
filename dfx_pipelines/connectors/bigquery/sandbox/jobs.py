"""The job log (every query job: its SQL, whether it was a dry run, what it processed and billed, how it
ended) and the REST resources built from a job: Job, QueryResponse, GetQueryResultsResponse."""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .catalog import Column
from .encoding import encode_rows

DEFAULT_PAGE_ROWS = 10_000  # BigQuery pages by ~10 MB; rows are the sandbox's simpler unit


@dataclass
class JobRecord:
    job_id: str
    project: str
    location: str
    sql: str
    dry_run: bool
    api: str  # "jobs.insert" or "jobs.query"
    principal: str = ""
    state: str = "DONE"  # jobs finish synchronously in the sandbox
    bytes_processed: int = 0
    bytes_billed: int = 0
    exact_price: bool = True
    maximum_bytes_billed: int | None = None
    referenced_tables: list[dict[str, str]] = field(default_factory=list)
    executed: bool = False  # True only if DuckDB ran the query
    error: errors.BigQueryError | None = None
    schema: list[Column] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    ended_ms: int = 0

    @property
    def error_reason(self) -> str | None:
        return self.error.reason if self.error else None

    @property
    def total_rows(self) -> int:
        return len(self.rows)

    def reference(self, with_id: bool = True) -> dict[str, str]:
        reference = {"projectId": self.project, "location": self.location}
        if with_id:
            reference["jobId"] = self.job_id
        return reference


class JobLog:
    """Every job the sandbox saw, in order; thread-safe; looked up by (project, job id)."""

    def __init__(self) -> None:
        self._jobs: list[JobRecord] = []
        self._by_id: dict[tuple[str, str], JobRecord] = {}
        self._lock = threading.Lock()

    def add(self, job: JobRecord) -> bool:
        with self._lock:
            key = (job.project, job.job_id)
            if key in self._by_id:
                return False
            self._jobs.append(job)
            self._by_id[key] = job
            return True

    def get(self, project: str, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._by_id.get((project, job_id))

    def clear(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._by_id.clear()

    def __iter__(self) -> Iterator[JobRecord]:
        with self._lock:
            return iter(list(self._jobs))

    def __len__(self) -> int:
        return len(self._jobs)

    def __getitem__(self, index: int) -> JobRecord:
        with self._lock:
            return self._jobs[index]


# ---------------------------------------------------------------- resources


def _query_statistics(job: JobRecord) -> dict[str, Any]:
    stats: dict[str, Any] = {
        "totalBytesProcessed": str(job.bytes_processed),
        "totalBytesBilled": str(job.bytes_billed),
        "cacheHit": False,
        "statementType": "SELECT",
        "referencedTables": job.referenced_tables,
        "totalBytesProcessedAccuracy": "PRECISE" if job.exact_price else "UPPER_BOUND",
    }
    if job.dry_run:
        stats["estimatedBytesProcessed"] = str(job.bytes_processed)
    else:
        stats.update({"billingTier": 1, "totalSlotMs": "0"})
    if job.schema:
        stats["schema"] = {"fields": [c.api_repr() for c in job.schema]}
    return stats


def job_resource(job: JobRecord, self_link_base: str = "") -> dict[str, Any]:
    query_config: dict[str, Any] = {"query": job.sql, "useLegacySql": False, "priority": "INTERACTIVE"}
    if job.maximum_bytes_billed is not None:
        query_config["maximumBytesBilled"] = str(job.maximum_bytes_billed)
    configuration: dict[str, Any] = {"query": query_config, "jobType": "QUERY"}
    if job.dry_run:
        configuration["dryRun"] = True
    statistics: dict[str, Any] = {"creationTime": str(job.created_ms)}
    if not job.dry_run:
        statistics.update({"startTime": str(job.created_ms), "endTime": str(job.ended_ms or job.created_ms)})
    statistics["totalBytesProcessed"] = str(job.bytes_processed)
    statistics["query"] = _query_statistics(job)
    status: dict[str, Any] = {"state": job.state}
    if job.error is not None:
        status["errorResult"] = job.error.error_proto()
        status["errors"] = [job.error.error_proto()]
    resource = {
        "kind": "bigquery#job",
        "etag": f'"{job.job_id[-12:]}"',
        "id": f"{job.project}:{job.location}.{job.job_id}",
        "jobReference": job.reference(),
        "configuration": configuration,
        "statistics": statistics,
        "status": status,
        "user_email": job.principal,
        "principal_subject": f"serviceAccount:{job.principal}" if job.principal else "",
        "jobCreationReason": {"code": "REQUESTED"},
    }
    if self_link_base:
        resource["selfLink"] = f"{self_link_base}/projects/{job.project}/jobs/{job.job_id}?location={job.location}"
    return resource


def page_token(job: JobRecord, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{job.job_id}:{offset}".encode()).decode("ascii").rstrip("=")


def offset_from_token(token: str | None, job: JobRecord) -> int:
    if not token:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        job_id, _, offset = decoded.rpartition(":")
        if job_id != job.job_id:
            raise ValueError(job_id)
        return int(offset)
    except ValueError:
        raise errors.invalid(f"Invalid page token: {token}") from None


def results_page(job: JobRecord, start: int, max_results: int | None, int64_timestamps: bool) -> dict[str, Any]:
    """The rows part shared by jobs.query and jobs.getQueryResults, plus the next pageToken."""
    count = DEFAULT_PAGE_ROWS if max_results is None else max(0, max_results)
    end = min(job.total_rows, start + count)
    page: dict[str, Any] = {
        "schema": {"fields": [c.api_repr() for c in job.schema]},
        "totalRows": str(job.total_rows),
        "jobComplete": True,
        "cacheHit": False,
    }
    if end > start:
        page["rows"] = encode_rows(job.schema, job.rows[start:end], int64_timestamps)
    if end < job.total_rows and count > 0:
        page["pageToken"] = page_token(job, end)
    return page


def query_response(job: JobRecord, max_results: int | None, int64_timestamps: bool) -> dict[str, Any]:
    """jobs.query's QueryResponse: the job reference, statistics and (unless dry) the first page."""
    response: dict[str, Any] = {
        "kind": "bigquery#queryResponse",
        "jobReference": job.reference(with_id=not job.dry_run),
        "totalBytesProcessed": str(job.bytes_processed),
        "jobComplete": True,
        "cacheHit": False,
        "queryId": job.job_id,
        "creationTime": str(job.created_ms),
    }
    if job.dry_run:
        response["schema"] = {"fields": [c.api_repr() for c in job.schema]}
        return response
    response.update(results_page(job, 0, max_results, int64_timestamps))
    response.update(
        {
            "totalBytesBilled": str(job.bytes_billed),
            "startTime": str(job.created_ms),
            "endTime": str(job.ended_ms or job.created_ms),
            "totalSlotMs": "0",
        }
    )
    return response


def get_query_results_response(
    job: JobRecord, start: int, max_results: int | None, int64_timestamps: bool
) -> dict[str, Any]:
    response: dict[str, Any] = {
        "kind": "bigquery#getQueryResultsResponse",
        "etag": f'"{job.job_id[-12:]}"',
        "jobReference": job.reference(),
        "totalBytesProcessed": str(job.bytes_processed),
    }
    response.update(results_page(job, start, max_results, int64_timestamps))
    return response
