"""Issue search: Cloud's `search/jql` (nextPageToken paging, id-only default, no total), the approximate
count, the retired `search` (410 on Cloud) and Data Center's `search` (startAt/total), plus one issue.

Page sizes follow Atlassian's documentation: `search/jql` returns up to 5,000 issues a page when only ids
are requested and at most 100 when fields or expansions are; Data Center caps `search` at 1,000.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from dfx_pipelines.connectors.jira.sandbox.api import ApiError, Call, route
from dfx_pipelines.connectors.jira.sandbox.issues import (
    ALL_FIELD_IDS,
    NAVIGABLE_FIELD_IDS,
    field_names,
    field_schema,
    issue_json,
    parse_fields_param,
    resolve_fields,
)
from dfx_pipelines.connectors.jira.sandbox.jql import parse
from dfx_pipelines.connectors.jira.sandbox.jql_eval import Compiler, sort_records
from dfx_pipelines.connectors.jira.sandbox.jql_lexer import JqlError
from dfx_pipelines.platform.sandbox import Response

ID_ONLY_PAGE_CAP = 5000
FIELDS_PAGE_CAP = 100
DATA_CENTER_PAGE_CAP = 1000
DEFAULT_PAGE = 50
UNBOUNDED = "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
SEARCH_REMOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)


def matching_records(call: Call, jql: str, *, enhanced: bool) -> list:
    """The issues a JQL query matches, in its order; cached per (query, site version) for paging."""
    app = call.app
    try:
        query = parse(jql)
        if enhanced and not query.bounded:
            raise ApiError(400, UNBOUNDED)
        if enhanced and app.require_project_in_jql and "project" not in query.clause_fields():
            raise ApiError(400, UNBOUNDED)
        cache_key = (jql, call.site.version, call.site.now_epoch)  # relative dates move with the clock
        cached = app.search_cache_get(cache_key)
        if cached is not None:
            return cached
        compiler = Compiler(call.site, hidden_projects=app.hidden_project_indexes)
        predicate = compiler.compile(query.where) if query.where is not None else (lambda record: True)
        sort_records(call.site, [], query.order_by)  # refuses unknown ORDER BY fields before scanning
        with call.site.lock:
            matched = [r for r in call.site.issues if app.visible(r) and predicate(r)]
        ordered = sort_records(call.site, matched, query.order_by)
    except JqlError as exc:
        raise ApiError(400, str(exc)) from None
    app.search_cache_put(cache_key, ordered)
    return ordered


def _token(offset: int, jql: str) -> str:
    digest = hashlib.sha256(jql.encode()).hexdigest()[:12]
    return base64.urlsafe_b64encode(f"{offset}:{digest}".encode()).decode().rstrip("=")


def _offset(token: str | None, jql: str) -> int:
    if not token:
        return 0
    try:
        offset_text, digest = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split(":")
        if digest != hashlib.sha256(jql.encode()).hexdigest()[:12]:
            raise ValueError("token from another query")
        return int(offset_text)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "The provided next page token is invalid or expired.") from None


def _expand_set(raw: Any) -> frozenset[str]:
    if raw is None:
        return frozenset()
    parts = raw if isinstance(raw, list) else str(raw).split(",")
    return frozenset(str(part).strip() for part in parts if str(part).strip())


def search_jql(call: Call) -> Response:
    if call.request.method == "POST":
        body = call.json_body()
        jql = body.get("jql") or ""
        requested = parse_fields_param(body.get("fields") or [])
        expand = _expand_set(body.get("expand"))
        token = body.get("nextPageToken")
        max_results = call.int_arg("maxResults", DEFAULT_PAGE, source=body)
    else:
        jql = call.arg("jql", "") or ""
        requested = parse_fields_param(call.args("fields"))
        expand = _expand_set(call.arg("expand"))
        token = call.arg("nextPageToken")
        max_results = call.int_arg("maxResults", DEFAULT_PAGE)
    id_only = set(requested) <= {"id"} and not expand
    field_ids = () if id_only else resolve_fields(requested, ("id",))
    call.app.record_fields(call, requested, expand)
    records = matching_records(call, jql, enhanced=True)
    limit = min(max_results, ID_ONLY_PAGE_CAP if id_only else FIELDS_PAGE_CAP) or DEFAULT_PAGE
    offset = _offset(token, jql)
    page = records[offset : offset + limit]
    limit_changelog = call.app.embedded_changelog_limit
    payload: dict[str, Any] = {
        "issues": [
            issue_json(call.ctx, r, field_ids, expand=expand, changelog_limit=limit_changelog, id_only=id_only)
            for r in page
        ]
    }
    if offset + limit < len(records):
        payload["nextPageToken"] = _token(offset + limit, jql)
    payload["isLast"] = offset + limit >= len(records)
    if "names" in expand:
        payload["names"] = field_names(call.ctx, field_ids)
        for issue in payload["issues"]:
            issue.pop("names", None)
    if "schema" in expand:
        payload["schema"] = {field_id: field_schema(field_id) for field_id in field_ids}
    return Response.json(payload)


def approximate_count(call: Call) -> Response:
    jql = str(call.json_body().get("jql") or "")
    return Response.json({"count": len(matching_records(call, jql, enhanced=True))})


def legacy_search(call: Call) -> Response:
    """Cloud retired `search` (410); Data Center pages it with startAt/maxResults/total."""
    if call.cloud:
        raise ApiError(410, SEARCH_REMOVED)
    source = call.json_body() if call.request.method == "POST" else None
    if source is not None:
        jql, requested, expand = (
            source.get("jql") or "",
            parse_fields_param(source.get("fields") or []),
            _expand_set(source.get("expand")),
        )
    else:
        jql, requested, expand = (
            call.arg("jql", "") or "",
            parse_fields_param(call.args("fields")),
            _expand_set(call.arg("expand")),
        )
    start_at = call.int_arg("startAt", 0, source=source)
    max_results = min(call.int_arg("maxResults", DEFAULT_PAGE, source=source), DATA_CENTER_PAGE_CAP)
    field_ids = resolve_fields(requested, NAVIGABLE_FIELD_IDS)  # Data Center's default: navigable fields
    call.app.record_fields(call, requested, expand)
    records = matching_records(call, jql, enhanced=False)
    page = records[start_at : start_at + max_results]
    limit_changelog = call.app.embedded_changelog_limit
    payload: dict[str, Any] = {
        "expand": "schema,names",
        "startAt": start_at,
        "maxResults": max_results,
        "total": len(records),
        "issues": [issue_json(call.ctx, r, field_ids, expand=expand, changelog_limit=limit_changelog) for r in page],
    }
    if "names" in expand:
        payload["names"] = field_names(call.ctx, field_ids)
    return Response.json(payload)


def get_issue(call: Call) -> Response:
    record = call.issue(call.params["key"])
    requested = parse_fields_param(call.args("fields"))
    expand = _expand_set(call.arg("expand"))
    call.app.record_fields(call, requested, expand)
    field_ids = resolve_fields(requested, ALL_FIELD_IDS)
    # A single issue's embedded changelog is capped at 100 histories on Cloud.
    return Response.json(
        issue_json(call.ctx, record, field_ids, expand=expand, changelog_limit=100 if call.cloud else None)
    )


ROUTES = [
    route("GET", "api/{v}/search/jql", search_jql, flavours=("cloud",)),
    route("POST", "api/{v}/search/jql", search_jql, flavours=("cloud",)),
    route("POST", "api/{v}/search/approximate-count", approximate_count, flavours=("cloud",)),
    route("GET", "api/{v}/search", legacy_search),
    route("POST", "api/{v}/search", legacy_search),
    route("GET", "api/{v}/issue/{key}", get_issue),
]
