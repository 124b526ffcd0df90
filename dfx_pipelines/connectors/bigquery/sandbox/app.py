"""`BigQuerySandbox`: the SandboxApp serving BigQuery's REST v2 (datasets, tables, tabledata.list,
jobs.insert/get/cancel, jobs.query, jobs.getQueryResults) and the OAuth token endpoint, as the real
google-cloud-bigquery client calls them."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import pandas as pd

from dfx_pipelines.platform.sandbox import Request, Response, SandboxApp

from . import errors
from .auth import TokenIssuer
from .catalog import DEMO_PROJECT, LOCATION, Catalog, Table, demo_catalog
from .encoding import encode_rows
from .engine import QueryEngine, QueryRequest
from .generate import generate_demo_frames
from .jobs import JobLog, JobRecord, get_query_results_response, job_resource, offset_from_token, query_response
from .warehouse import Warehouse

log = logging.getLogger(__name__)

API_PREFIX = re.compile(r"^/bigquery/v2/projects/(?P<project>[^/]+)/(?P<rest>.*)$")
CREATED_MS = "1704067200000"  # 2024-01-01T00:00:00Z: fixed, so metadata is deterministic
DEFAULT_LIST_PAGE = 50


def _flag(value: str | None) -> bool:
    return str(value).lower() in ("1", "true")


def _int_arg(request: Request, name: str) -> int | None:
    value = request.arg(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError:
        raise errors.invalid(f"Invalid value for {name}: {value}") from None


class BigQuerySandbox(SandboxApp):
    """A local BigQuery over the demo warehouse (or a given catalog and frames keyed `dataset.table`)."""

    name = "bigquery"

    def __init__(
        self,
        catalog: Catalog | None = None,
        frames: Mapping[str, pd.DataFrame] | None = None,
        *,
        rows: int | Mapping[str, int] = 2000,
        seed: int = 7,
        project: str = DEMO_PROJECT,
        location: str = LOCATION,
        token_lifetime: int = 3600,
    ):
        self.project = project
        self.location = location
        self.catalog = catalog if catalog is not None else demo_catalog(project)
        if frames is None:
            frames = generate_demo_frames(rows, seed)
        self.warehouse = Warehouse(self.catalog, frames)  # the frames are not kept: DuckDB holds the data
        self.jobs = JobLog()
        self.tokens = TokenIssuer(lifetime=token_lifetime)
        self.engine = QueryEngine(self.catalog, self.warehouse, self.jobs, location)
        self.base_url = ""  # set by whoever serves it; used for selfLinks only

    def close(self) -> None:
        """Release DuckDB (the server must be stopped first)."""
        self.warehouse.close()

    # ------------------------------------------------------------ SandboxApp protocol

    def unauthorized(self, request: Request) -> Response:
        return errors.invalid_credentials().response(
            {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
        )

    def rate_limited(self, request: Request, retry_after: float) -> Response:
        return errors.rate_limit_exceeded().response({"Retry-After": f"{retry_after:g}"})

    def handle(self, request: Request) -> Response:
        if request.path == "/token":
            return self.tokens.handle(request)
        match = API_PREFIX.match(request.path)
        try:
            if match is None:
                raise errors.not_found(f"URL {request.path}")
            token = request.bearer_token()
            if not token:
                return errors.missing_credentials().response(
                    {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'}
                )
            principal = self.tokens.principal(token)
            if principal is None:
                return self.unauthorized(request)
            return self._route(request, match.group("project"), match.group("rest").rstrip("/"), principal)
        except errors.BigQueryError as exc:
            return exc.response()
        except Exception:
            # A sandbox bug. Not BigQuery's retryable `internalError`: the client would retry for ten minutes.
            log.exception("BigQuery sandbox failed on %s %s", request.method, request.path)
            return errors.BigQueryError(
                500, "sandboxInternalError", "The BigQuery sandbox failed; see its log"
            ).response()

    def _route(self, request: Request, project: str, rest: str, principal: str) -> Response:
        get, post = request.method == "GET", request.method == "POST"
        match rest.split("/"):
            case ["datasets"] if get:
                return self._list_datasets(request, project)
            case ["datasets", dataset] if get:
                return Response.json(self._dataset_resource(project, dataset))
            case ["datasets", dataset, "tables"] if get:
                return self._list_tables(request, project, dataset)
            case ["datasets", dataset, "tables", table] if get:
                return Response.json(self._table_resource(self._table(project, dataset, table)))
            case ["datasets", dataset, "tables", table, "data"] if get:
                return self._tabledata_list(request, self._table(project, dataset, table))
            case ["jobs"] if post:
                return self._insert_job(request, project, principal)
            case ["jobs", job_id] if get:
                return Response.json(job_resource(self._job(project, job_id), self._api_base()))
            case ["jobs", job_id, "cancel"] if post:  # jobs are done as soon as they exist: nothing to cancel
                job = job_resource(self._job(project, job_id), self._api_base())
                return Response.json({"kind": "bigquery#jobCancelResponse", "job": job})
            case ["queries"] if post:
                return self._query(request, project, principal)
            case ["queries", job_id] if get:
                return self._get_query_results(request, project, job_id)
        raise errors.not_found(f"URL {request.method} {request.path}")

    def _api_base(self) -> str:
        return f"{self.base_url}/bigquery/v2" if self.base_url else ""

    # ------------------------------------------------------------ datasets and tables

    def _check_dataset(self, project: str, dataset: str) -> None:
        if not self.catalog.has_dataset(project, dataset):
            raise errors.dataset_not_found(project, dataset, self.location)

    def _table(self, project: str, dataset: str, name: str) -> Table:
        self._check_dataset(project, dataset)
        table = self.catalog.get(project, dataset, name)
        if table is None:
            raise errors.table_not_found(project, dataset, name, self.location)
        return table

    def _job(self, project: str, job_id: str) -> JobRecord:
        job = self.jobs.get(project, job_id)
        if job is None:
            raise errors.not_found(f"Job {project}:{self.location}.{job_id}")
        return job

    @staticmethod
    def _page(request: Request, items: list[Any]) -> tuple[list[Any], str | None]:
        """List paging: the page token is the offset of the next item."""
        token = request.arg("pageToken") or "0"
        start = int(token) if token.isdigit() else 0
        end = start + (_int_arg(request, "maxResults") or DEFAULT_LIST_PAGE)
        return items[start:end], (str(end) if end < len(items) else None)

    def _list_datasets(self, request: Request, project: str) -> Response:
        items = [
            {
                "kind": "bigquery#dataset",
                "id": f"{project}:{name}",
                "datasetReference": {"projectId": project, "datasetId": name},
                "location": self.location,
                "type": "DEFAULT",
            }
            for name in self.catalog.dataset_names(project)
        ]
        page, token = self._page(request, items)
        body: dict[str, Any] = {"kind": "bigquery#datasetList", "etag": '"datasets"', "datasets": page}
        if token:
            body["nextPageToken"] = token
        return Response.json(body)

    def _dataset_resource(self, project: str, dataset: str) -> dict[str, Any]:
        self._check_dataset(project, dataset)
        return {
            "kind": "bigquery#dataset",
            "etag": f'"{dataset}"',
            "id": f"{project}:{dataset}",
            "datasetReference": {"projectId": project, "datasetId": dataset},
            "description": self.catalog.datasets.get((project.lower(), dataset.lower()), ""),
            "location": self.location,
            "creationTime": CREATED_MS,
            "lastModifiedTime": CREATED_MS,
            "type": "DEFAULT",
        }

    def _table_list_item(self, table: Table) -> dict[str, Any]:
        item: dict[str, Any] = {
            "kind": "bigquery#table",
            "id": table.full_id,
            "tableReference": table.reference(),
            "type": "VIEW" if table.is_view else "TABLE",
            "creationTime": CREATED_MS,
        }
        if table.partition_field:
            item["timePartitioning"] = {"type": "DAY", "field": table.partition_field}
        if table.is_view:
            item["view"] = {"useLegacySql": False}
        return item

    def _list_tables(self, request: Request, project: str, dataset: str) -> Response:
        self._check_dataset(project, dataset)
        items = [self._table_list_item(t) for t in self.catalog.tables_in(project, dataset)]
        page, token = self._page(request, items)
        body: dict[str, Any] = {
            "kind": "bigquery#tableList",
            "etag": '"tables"',
            "tables": page,
            "totalItems": len(items),
        }
        if token:
            body["nextPageToken"] = token
        return Response.json(body)

    def _table_resource(self, table: Table) -> dict[str, Any]:
        resource = self._table_list_item(table)
        resource.update(
            {
                "etag": f'"{table.name}"',
                "schema": {"fields": [c.api_repr() for c in table.columns]},
                "location": self.location,
                "lastModifiedTime": CREATED_MS,
            }
        )
        if table.description:
            resource["description"] = table.description
        if table.is_view:
            resource["view"] = {"query": table.view_sql, "useLegacySql": False}
            return resource
        stats = self.warehouse.table_stats(table)
        resource.update(
            {
                "numRows": str(stats.num_rows),
                "numBytes": str(stats.total_bytes),  # logical bytes: what a full scan of every column would process
                "numLongTermBytes": "0",
                "numTotalLogicalBytes": str(stats.total_bytes),
                "numActiveLogicalBytes": str(stats.total_bytes),
            }
        )
        if self._api_base():
            resource["selfLink"] = (
                f"{self._api_base()}/projects/{table.project}/datasets/{table.dataset}/tables/{table.name}"
            )
        return resource

    def _tabledata_list(self, request: Request, table: Table) -> Response:
        if table.is_view:
            raise errors.invalid(f"Cannot list a table of type VIEW: {table.full_id}")
        stats = self.warehouse.table_stats(table)
        selected = [f.strip() for f in (request.arg("selectedFields") or "").split(",") if f.strip()]
        columns = [table.column(name) for name in selected] if selected else list(table.columns)
        if any(c is None for c in columns):
            raise errors.invalid(f"Invalid field selection {request.arg('selectedFields')}")
        start = _int_arg(request, "startIndex") or 0
        token = request.arg("pageToken")
        if token:
            start = int(token) if token.isdigit() else 0
        count = _int_arg(request, "maxResults")
        count = 10_000 if count is None else count
        rows = self.warehouse.read_rows(table, start, count, [c.name for c in columns])  # type: ignore[union-attr]
        int64 = _flag(request.arg("formatOptions.useInt64Timestamp"))
        body: dict[str, Any] = {
            "kind": "bigquery#tableDataList",
            "etag": f'"{table.name}"',
            "totalRows": str(stats.num_rows),
        }
        if rows:
            body["rows"] = encode_rows(columns, rows, int64)  # type: ignore[arg-type]
        if start + len(rows) < stats.num_rows and count > 0:
            body["pageToken"] = str(start + len(rows))
        return Response.json(body)

    # ------------------------------------------------------------ jobs

    @staticmethod
    def _body(request: Request) -> dict[str, Any]:
        try:
            body = request.json() or {}
        except ValueError:
            raise errors.invalid("Invalid JSON payload received.") from None
        if not isinstance(body, dict):
            raise errors.invalid("Invalid JSON payload received.")
        return body

    @staticmethod
    def _query_request(
        project: str, query: Mapping[str, Any], dry_run: bool, api: str, principal: str, job_id: str | None
    ) -> QueryRequest:
        if query.get("useLegacySql") is True:
            raise errors.invalid("Legacy SQL is not supported by this sandbox; use GoogleSQL (useLegacySql=false)")
        maximum = query.get("maximumBytesBilled")
        default_dataset = (query.get("defaultDataset") or {}).get("datasetId")
        return QueryRequest(
            project=project,
            sql=str(query.get("query") or ""),
            dry_run=dry_run,
            maximum_bytes_billed=int(maximum) if maximum not in (None, "") else None,
            parameters=query.get("queryParameters"),
            default_dataset=default_dataset,
            job_id=job_id,
            api=api,
            principal=principal,
        )

    def _insert_job(self, request: Request, project: str, principal: str) -> Response:
        body = self._body(request)
        configuration = body.get("configuration") or {}
        if "query" not in configuration:
            raise errors.invalid("Only query jobs are supported by this sandbox")
        job_id = (body.get("jobReference") or {}).get("jobId")
        dry_run = bool(configuration.get("dryRun"))
        job = self.engine.run(
            self._query_request(project, configuration["query"], dry_run, "jobs.insert", principal, job_id)
        )
        if dry_run and job.error is not None:
            return job.error.response()  # a dry run creates no job: its errors come back on the call itself
        return Response.json(job_resource(job, self._api_base()))

    def _query(self, request: Request, project: str, principal: str) -> Response:
        body = self._body(request)
        job = self.engine.run(
            self._query_request(project, body, bool(body.get("dryRun")), "jobs.query", principal, None)
        )
        if job.error is not None:
            return job.error.response()  # jobs.query reports a failed query as an HTTP error
        int64 = _flag((body.get("formatOptions") or {}).get("useInt64Timestamp"))
        max_results = body.get("maxResults")
        return Response.json(query_response(job, int(max_results) if max_results is not None else None, int64))

    def _get_query_results(self, request: Request, project: str, job_id: str) -> Response:
        job = self._job(project, job_id)
        if job.error is not None:
            return job.error.response()
        start = (
            offset_from_token(request.arg("pageToken"), job)
            if request.arg("pageToken")
            else (_int_arg(request, "startIndex") or 0)
        )
        int64 = _flag(request.arg("formatOptions.useInt64Timestamp"))
        return Response.json(get_query_results_response(job, start, _int_arg(request, "maxResults"), int64))
