"""`JiraClient`: every request the connector makes to one Jira site, Cloud or Data Center.

Plain `requests` through the platform's session rather than the `jira` library: the library builds its
own `ResilientSession` (a second retry layer with its own backoff, its own TLS settings, no byte or call
accounting, a serverInfo call at construction) and lacks `changelog/bulkfetch`, Service Management SLAs
and `search/jql`'s token paging as raw JSON. Here every call goes through one session that retries
429/503/5xx/dropped connections honouring Retry-After, counts calls and bytes, and refreshes an OAuth
token once on 401.

Changelogs on Cloud never come embedded in search (where Jira truncates them and where edits of any field
ride along): they come from `POST /changelog/bulkfetch` filtered to the fields a metric replays. Data
Center has no such call: its search embeds the changelog, completed from `GET /issue/{key}` when truncated,
and items of other fields are dropped on arrival.

Worklogs, when a plan asks for them, come embedded in search: Jira's `worklog` field holds an issue's
first 20 worklogs and their true `total`. They are reduced on arrival (their comments dropped) and only an
issue with more than were embedded costs a `GET /issue/{id}/worklog` of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

import requests

from dfx_pipelines.connectors.jira.metrics import JiraDataError, parse_jira_timestamp
from dfx_pipelines.connectors.jira.query import FieldPlan
from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import AuthError
from dfx_pipelines.platform.http import api_calls, bytes_received, check_response, translate_errors

log = logging.getLogger(__name__)

SEARCH_PAGE = 100  # Cloud's cap when fields are requested; Data Center allows more, 100 keeps pages small
ID_PAGE = 5000  # search/jql's page when only ids are asked for
BULK_ISSUES = 1000
BULK_PAGE = 1000
AGILE_PAGE = 50
WORKLOG_FIELD = "worklog"  # requested only through `FieldPlan.worklogs`, reduced on arrival
MAX_REFRESHES_PER_CALL = 3


class Credentials(Protocol):
    def header(self) -> str: ...

    def refresh(self) -> bool:
        """Get a fresh credential after a 401; False when there is nothing to refresh."""
        ...


@dataclass
class StaticCredentials:
    value: str  # the whole Authorization header value
    refreshes: int = 0

    def header(self) -> str:
        return self.value

    def refresh(self) -> bool:
        return False


@dataclass
class IssuePage:
    """One search page: issues (JSON as returned, minus the worklog field), per issue id its complete change
    histories and, with `FieldPlan.worklogs`, its reduced worklogs when search embedded all of them (an
    issue missing from `worklogs` needs `JiraClient.issue_worklogs`)."""

    issues: list[dict[str, Any]]
    histories: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    worklogs: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


class JiraClient:
    def __init__(
        self,
        session: requests.Session,
        base_url: str,
        flavour: str,
        credentials: Credentials,
        *,
        extra_sessions: tuple[requests.Session, ...] = (),
    ):
        self.session = session
        self.base_url = base_url.rstrip("/")
        self.flavour = flavour
        self.cloud = flavour == "cloud"
        self.api = "3" if self.cloud else "2"
        self.credentials = credentials
        self.extra_sessions = extra_sessions  # token calls: counted too
        self.records_read = 0
        self.queries: list[str] = []

    # -- accounting

    @property
    def api_calls(self) -> int:
        return api_calls(self.session) + sum(api_calls(s) for s in self.extra_sessions)

    @property
    def bytes_read(self) -> int:
        return bytes_received(self.session) + sum(bytes_received(s) for s in self.extra_sessions)

    @property
    def refreshes(self) -> int:
        return getattr(self.credentials, "refreshes", 0)

    # -- the one request path

    def _request(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        url = f"{self.base_url}{path}"
        refreshes = 0
        while True:
            headers = {"Authorization": self.credentials.header(), "Accept": "application/json"}
            with translate_errors(f"Jira {what}"):
                response = self.session.request(method, url, headers=headers, **kwargs)
            # A fresh token can be refused again (revoked sessions, a clock skew at expiry): refresh a few
            # times, not forever.
            if response.status_code == 401 and refreshes < MAX_REFRESHES_PER_CALL and self.credentials.refresh():
                refreshes += 1
                log.info("Jira %s: access token refreshed after a 401", what)
                continue
            if response.status_code == 401:
                raise AuthError(
                    f"Jira {what}: HTTP 401, the credential was refused"
                    + (f" even after {refreshes} refreshes" if refreshes else "")
                )
            check_response(response, f"Jira {what}")
            return response.json()

    def get(self, path: str, what: str, **params: Any) -> Any:
        return self._request("GET", path, what, params=params or None)

    def post(self, path: str, what: str, body: dict[str, Any]) -> Any:
        return self._request("POST", path, what, json=body)

    # -- platform API

    def server_time(self) -> datetime:
        info = self.get(f"/rest/api/{self.api}/serverInfo", "serverInfo")
        return parse_jira_timestamp(info["serverTime"])

    def fields(self) -> list[dict[str, Any]]:
        return self.get(f"/rest/api/{self.api}/field", "fields")

    def project(self, key: str) -> dict[str, Any]:
        return self.get(f"/rest/api/{self.api}/project/{identifiers.jira_project_key(key)}", f"project {key}")

    def statuses(self) -> list[dict[str, Any]]:
        return self.get(f"/rest/api/{self.api}/status", "statuses")

    # -- search

    def search(self, jql: str, plan: FieldPlan) -> Iterator[IssuePage]:
        """Every issue matching `jql`, a page at a time, with full histories of `plan.changelog` fields and,
        with `plan.worklogs`, each issue's reduced worklogs when search embedded all of them."""
        self.queries.append(jql)
        fields = list(plan.fields) + ([WORKLOG_FIELD] if plan.worklogs else [])
        if self.cloud:
            pages = self._search_cloud(jql, fields)
        else:
            pages = self._search_datacenter(jql, fields, bool(plan.changelog))
        for issues in pages:
            self.records_read += len(issues)
            page = IssuePage(issues)
            if plan.worklogs:
                page.worklogs = self._embedded_worklogs(issues)
            if plan.changelog and issues:
                page.histories = self._histories(issues, plan)
            yield page

    def count(self, jql: str) -> int:
        """How many issues match `jql`, exactly. Cloud's only count, `search/approximate-count`, is
        approximate (it may miss recent changes), so Cloud pages the matching ids instead: a search for
        `id` alone returns up to 5,000 issues a page at ~20 bytes each. Data Center's search states its
        `total`, so a search of zero results answers in one call."""
        self.queries.append(jql)
        if not self.cloud:
            body = {"jql": jql, "fields": ["id"], "startAt": 0, "maxResults": 0}
            return int(self.post(f"/rest/api/{self.api}/search", "count", body).get("total") or 0)
        found, token = 0, None
        while True:
            request: dict[str, Any] = {"jql": jql, "fields": ["id"], "maxResults": ID_PAGE}
            if token:
                request["nextPageToken"] = token
            payload = self.post(f"/rest/api/{self.api}/search/jql", "count", request)
            found += len(payload.get("issues") or [])
            token = payload.get("nextPageToken")
            if payload.get("isLast", True) or not token:
                return found

    def issue_types(self) -> list[dict[str, Any]]:
        return self.get(f"/rest/api/{self.api}/issuetype", "issue types")

    def components(self, project: str) -> list[dict[str, Any]]:
        key = identifiers.jira_project_key(project)
        return self.get(f"/rest/api/{self.api}/project/{key}/components", f"components of {project}")

    def _search_cloud(self, jql: str, fields: list[str]) -> Iterator[list[dict[str, Any]]]:
        token: str | None = None
        while True:
            body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": SEARCH_PAGE}
            if token:
                body["nextPageToken"] = token
            payload = self.post(f"/rest/api/{self.api}/search/jql", "search", body)
            yield payload.get("issues") or []
            token = payload.get("nextPageToken")
            if payload.get("isLast", True) or not token:
                return

    def _search_datacenter(self, jql: str, fields: list[str], changelog: bool) -> Iterator[list[dict[str, Any]]]:
        start = 0
        while True:
            body: dict[str, Any] = {"jql": jql, "fields": fields, "startAt": start, "maxResults": SEARCH_PAGE}
            if changelog:
                body["expand"] = ["changelog"]
            payload = self.post(f"/rest/api/{self.api}/search", "search", body)
            issues = payload.get("issues") or []
            yield issues
            start += len(issues)
            if not issues or start >= int(payload.get("total") or 0):
                return

    def _embedded_worklogs(self, issues: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
        """Each issue's `worklog` field, popped from the issue so no comment outlives this call, reduced
        like `issue_worklogs` reduces them. Only complete lists are returned: an issue with more worklogs
        than embedded, or whose field Jira left out (time tracking off, hidden field), is not in the
        result, so the caller falls back to `issue_worklogs` for it."""
        complete = {}
        for issue in issues:
            embedded = (issue.get("fields") or {}).pop(WORKLOG_FIELD, None)
            if not isinstance(embedded, dict):
                continue
            worklogs = embedded.get("worklogs") or []
            self.records_read += len(worklogs)
            total = embedded.get("total")
            if total is None or int(total) > len(worklogs):
                continue
            issue_id = str(issue["id"])
            complete[issue_id] = [_reduced_worklog(worklog, issue_id) for worklog in worklogs]
        return complete

    # -- changelogs

    def _histories(self, issues: list[dict[str, Any]], plan: FieldPlan) -> dict[str, list[dict[str, Any]]]:
        if self.cloud:
            return self._bulk_histories([str(issue["id"]) for issue in issues], plan.changelog)
        field_ids = plan.changelog + plan.changelog_names
        found = {}
        for issue in issues:
            changelog = issue.pop("changelog", None) or {}
            histories = changelog.get("histories") or []
            if int(changelog.get("total") or 0) > len(histories):
                full = self.get(
                    f"/rest/api/{self.api}/issue/{issue['id']}",
                    f"changelog of {issue.get('key')}",
                    fields="created",
                    expand="changelog",
                )
                changelog = full.get("changelog") or {}
                histories = changelog.get("histories") or []
                if int(changelog.get("total") or 0) > len(histories):
                    raise JiraDataError(
                        f"issue {issue.get('key')}: Jira returned {len(histories)} of {changelog.get('total')} histories"
                    )
            found[str(issue["id"])] = _keep_items(histories, field_ids)
        return found

    def _bulk_histories(self, issue_ids: list[str], field_ids: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] = {issue_id: [] for issue_id in issue_ids}
        for start in range(0, len(issue_ids), BULK_ISSUES):
            token: str | None = None
            while True:
                body: dict[str, Any] = {
                    "issueIdsOrKeys": issue_ids[start : start + BULK_ISSUES],
                    "fieldIds": list(field_ids),
                    "maxResults": BULK_PAGE,
                }
                if token:
                    body["nextPageToken"] = token
                payload = self.post(f"/rest/api/{self.api}/changelog/bulkfetch", "changelog bulkfetch", body)
                for group in payload.get("issueChangeLogs") or []:
                    # A page may split one issue's histories: append, never replace.
                    found.setdefault(str(group["issueId"]), []).extend(
                        _keep_items(group.get("changeHistories") or [], field_ids)
                    )
                token = payload.get("nextPageToken")
                if not token:
                    break
        return found

    # -- agile

    def board(self, board_id: int) -> dict[str, Any]:
        return self.get(f"/rest/agile/1.0/board/{identifiers.jira_board_id(board_id)}", f"board {board_id}")

    def board_configuration(self, board_id: int) -> dict[str, Any]:
        return self.get(
            f"/rest/agile/1.0/board/{identifiers.jira_board_id(board_id)}/configuration",
            f"board {board_id} configuration",
        )

    def board_sprints(self, board_id: int) -> list[dict[str, Any]]:
        sprints: list[dict[str, Any]] = []
        start = 0
        while True:
            page = self.get(
                f"/rest/agile/1.0/board/{identifiers.jira_board_id(board_id)}/sprint",
                f"board {board_id} sprints",
                startAt=start,
                maxResults=AGILE_PAGE,
            )
            values = page.get("values") or []
            sprints += values
            start += len(values)
            if page.get("isLast", True) or not values:
                self.records_read += len(sprints)
                return sprints

    # -- worklogs and SLAs

    def issue_worklogs(self, issue_id: str) -> Iterator[dict[str, Any]]:
        """An issue's worklogs reduced on arrival to {issueId, started, timeSpentSeconds}: Jira has no
        field selection for worklogs, so their comments cross the wire; they are dropped here, unread."""
        start = 0
        while True:
            page = self.get(
                f"/rest/api/{self.api}/issue/{identifiers.jira_issue_id(issue_id)}/worklog",
                "issue worklogs",
                startAt=start,
                maxResults=1000,
            )
            worklogs = page.get("worklogs") or []
            self.records_read += len(worklogs)
            for worklog in worklogs:
                yield _reduced_worklog(worklog, issue_id)
            start += len(worklogs)
            if not worklogs or start >= int(page.get("total") or 0):
                return

    def request_slas(self, issue_id: str) -> list[dict[str, Any]]:
        """SLA values of one service request, keeping only what `sla_status_rows` reads."""
        payload = self.get(f"/rest/servicedeskapi/request/{identifiers.jira_issue_id(issue_id)}/sla", "request SLA")
        values = payload.get("values") or []
        self.records_read += len(values)
        return [reduced_sla(value) for value in values]


def reduced_sla(value: dict[str, Any]) -> dict[str, Any]:
    """What `sla_status_rows` reads of one SLA (an entry of `/request/{key}/sla`, or the value of an
    `sd-sla-field` custom field in search, which has the same shape): its name and each cycle's breach."""
    ongoing = value.get("ongoingCycle")
    return {
        "name": value.get("name"),
        "completedCycles": [{"breached": bool(c.get("breached"))} for c in value.get("completedCycles") or ()],
        "ongoingCycle": {"breached": bool(ongoing.get("breached"))} if ongoing else None,
    }


def _reduced_worklog(worklog: dict[str, Any], issue_id: str) -> dict[str, Any]:
    """What `worklog_hours_rows` reads of a worklog (and, for the sync sensor, when it was last written),
    and nothing else: its comment is text a person wrote."""
    reduced = {
        "issueId": str(worklog.get("issueId") or issue_id),
        "started": worklog["started"],
        "timeSpentSeconds": worklog.get("timeSpentSeconds", 0),
    }
    if worklog.get("updated"):
        reduced["updated"] = worklog["updated"]
    return reduced


def _keep_items(histories: list[dict[str, Any]], wanted_fields: tuple[str, ...]) -> list[dict[str, Any]]:
    """Histories with only the change items of the wanted fields, so an edited description's text is
    never kept. Items match by `fieldId` (Cloud) or by `field`: Data Center items carry only the field's
    display name, which for built-in fields is the id and for custom fields is in `changelog_names`."""
    wanted = set(wanted_fields)
    kept = []
    for history in histories:
        items = [item for item in history.get("items") or () if (item.get("fieldId") or item.get("field")) in wanted]
        if items:
            kept.append({"created": history["created"], "items": items})
    return kept
