"""Platform REST routes besides search: server info, myself, fields, projects, components, statuses,
changelogs (per issue and bulk), and worklogs (per issue, updated since, list by ids)."""

from __future__ import annotations

import base64
from typing import Any

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.api import ApiError, Call, route
from dfx_pipelines.connectors.jira.sandbox.issues import field_details_json
from dfx_pipelines.connectors.jira.sandbox.records import jira_time
from dfx_pipelines.connectors.jira.sandbox.render import (
    avatar_urls,
    history_json,
    issuetype_json,
    priority_json,
    status_json,
    user_json,
    worklog_json,
)
from dfx_pipelines.platform.sandbox import Response

CHANGELOG_PAGE_CAP = 100
BULK_ISSUES_CAP = 1000
BULK_FIELD_IDS_CAP = 10
BULK_PAGE_DEFAULT = 1000
BULK_PAGE_CAP = 10000
WORKLOG_PAGE = 1000
WORKLOG_LIST_CAP = 1000
WORKLOG_SETTLE_SECONDS = 60  # Jira leaves out worklogs changed within the last minute


def server_info(call: Call) -> Response:
    if call.cloud:
        version, numbers, deployment, build = "1001.0.0-SNAPSHOT", [1001, 0, 0], "Cloud", 100289
    else:
        version, numbers, deployment, build = "9.12.15", [9, 12, 15], "Server", 9120015
    return Response.json({
        "baseUrl": call.ctx.base_url, "displayUrl": call.ctx.base_url, "version": version, "versionNumbers": numbers,
        "deploymentType": deployment, "buildNumber": build, "buildDate": "2025-05-20T00:00:00.000+0000",
        "serverTime": jira_time(call.site.now_epoch), "scmInfo": "0c5b3f1a9e7d", "serverTitle": "Jira",
    })  # fmt: skip


def myself(call: Call) -> Response:
    user = user_json(call.ctx, 0)
    user.update({"emailAddress": f"{catalog.SANDBOX_USER[2]}@example.com", "locale": "en_US"})
    if call.cloud:
        user["expand"] = "groups,applicationRoles"
    return Response.json(user)


def fields(call: Call) -> Response:
    return Response.json([field_details_json(call.ctx, spec) for spec in catalog.FIELDS])


def _project_json(call: Call, project: catalog.ProjectSpec, detailed: bool = False) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "expand": "description,lead,issueTypes,url,projectKeys,permissions,insight",
        "self": f"{call.ctx.rest}/project/{project.id}",
        "id": project.id,
        "key": project.key,
        "name": project.name,
        "avatarUrls": avatar_urls(call.ctx.base_url, "project", project.id),
        "projectTypeKey": project.type_key,
        "simplified": False,
        "style": "classic",
        "isPrivate": False,
        "properties": {},
    }
    if detailed:
        types = (
            [catalog.SERVICE_REQUEST]
            if project.type_key == "service_desk"
            else [t for t in catalog.ISSUE_TYPES if t is not catalog.SERVICE_REQUEST]
        )
        payload.update({
            "description": f"{project.name} project",
            "lead": user_json(call.ctx, 0),
            "components": [_component_json(call, project, i) for i in range(len(project.components))],
            "issueTypes": [issuetype_json(call.ctx, t) for t in types],
            "assigneeType": "UNASSIGNED",
            "versions": [],
            "roles": {},
        })  # fmt: skip
    return payload


def _visible_projects(call: Call) -> list[catalog.ProjectSpec]:
    return [p for i, p in enumerate(catalog.PROJECTS) if i not in call.app.hidden_project_indexes]


def _project(call: Call) -> catalog.ProjectSpec:
    key = call.params["key"]
    index = call.site.project_index(key)
    if index is None or index in call.app.hidden_project_indexes:
        raise ApiError(404, f"No project could be found with key '{key}'.")
    return catalog.PROJECTS[index]


def projects(call: Call) -> Response:
    return Response.json([_project_json(call, p) for p in _visible_projects(call)])


def project_search(call: Call) -> Response:
    start_at, max_results = call.int_arg("startAt", 0), min(call.int_arg("maxResults", 50), 100)
    keys = {k for value in call.args("keys") for k in value.split(",")}
    chosen = [p for p in _visible_projects(call) if not keys or p.key in keys or p.id in keys]
    page = chosen[start_at : start_at + max_results]
    payload: dict[str, Any] = {
        "self": f"{call.ctx.rest}/project/search",
        "maxResults": max_results,
        "startAt": start_at,
        "total": len(chosen),
    }
    payload["isLast"] = start_at + len(page) >= len(chosen)
    if not payload["isLast"]:
        payload["nextPage"] = (
            f"{call.ctx.rest}/project/search?startAt={start_at + max_results}&maxResults={max_results}"
        )
    payload["values"] = [_project_json(call, p) for p in page]
    return Response.json(payload)


def project(call: Call) -> Response:
    return Response.json(_project_json(call, _project(call), detailed=True))


def _component_json(call: Call, project: catalog.ProjectSpec, index: int) -> dict[str, Any]:
    component_id = str(10000 + int(project.id) % 100 * 10 + index)
    return {
        "self": f"{call.ctx.rest}/component/{component_id}", "id": component_id, "name": project.components[index],
        "description": f"{project.components[index]} work", "assigneeType": "PROJECT_DEFAULT",
        "realAssigneeType": "PROJECT_DEFAULT", "isAssigneeTypeValid": False, "project": project.key, "projectId": int(project.id),
    }  # fmt: skip


def components(call: Call) -> Response:
    project = _project(call)
    return Response.json([_component_json(call, project, i) for i in range(len(project.components))])


def statuses(call: Call) -> Response:
    return Response.json([status_json(call.ctx, status) for status in catalog.STATUSES])


def issue_types(call: Call) -> Response:
    return Response.json([issuetype_json(call.ctx, t) for t in catalog.ISSUE_TYPES])


def priorities(call: Call) -> Response:
    return Response.json([priority_json(call.ctx, i) for i in range(len(catalog.PRIORITIES))])


# ---------------------------------------------------------------- changelogs


def issue_changelog(call: Call) -> Response:
    record = call.issue(call.params["key"])
    start_at = call.int_arg("startAt", 0)
    max_results = min(call.int_arg("maxResults", CHANGELOG_PAGE_CAP, minimum=1), CHANGELOG_PAGE_CAP)
    histories = call.site.histories(record)
    shown = range(start_at, min(start_at + max_results, len(histories)))
    base = f"{call.ctx.rest}/issue/{record.id}/changelog"
    payload: dict[str, Any] = {
        "self": f"{base}?maxResults={max_results}&startAt={start_at}",
        "maxResults": max_results,
        "startAt": start_at,
    }
    payload["total"] = len(histories)
    payload["isLast"] = start_at + max_results >= len(histories)
    if not payload["isLast"]:
        payload["nextPage"] = f"{base}?maxResults={max_results}&startAt={start_at + max_results}"
    payload["values"] = [history_json(call.ctx, record, i, histories[i]) for i in shown]
    return Response.json(payload)


def bulk_changelog(call: Call) -> Response:
    body = call.json_body()
    keys = body.get("issueIdsOrKeys")
    if not isinstance(keys, list) or not keys:
        raise ApiError(400, "issueIdsOrKeys must be a non-empty list.")
    if len(keys) > BULK_ISSUES_CAP:
        raise ApiError(400, f"You can request changelogs of at most {BULK_ISSUES_CAP} issues at a time.")
    field_ids = body.get("fieldIds") or []
    if len(field_ids) > BULK_FIELD_IDS_CAP:
        raise ApiError(400, f"You can filter by at most {BULK_FIELD_IDS_CAP} field ids.")
    max_results = min(call.int_arg("maxResults", BULK_PAGE_DEFAULT, minimum=1, source=body), BULK_PAGE_CAP)
    token = body.get("nextPageToken")
    try:
        offset = int(base64.urlsafe_b64decode(str(token) + "==").decode()) if token else 0
    except ValueError:
        raise ApiError(400, "The provided next page token is invalid or expired.") from None
    records = []
    for key in keys:
        record = call.site.find(str(key))
        if record is not None and call.app.visible(record) and record not in records:
            records.append(record)
    # Histories numbered across the requested issues; a page may split one issue's histories.
    entries = []
    for record in records:
        for index, history in enumerate(call.site.histories(record)):
            items = tuple(i for i in history.items if not field_ids or i[0] in field_ids)
            if items:
                entries.append((record, index, history.__class__(history.at, history.author, items)))
    page = entries[offset : offset + max_results]
    grouped: dict[int, dict[str, Any]] = {}
    for record, index, history in page:
        group = grouped.setdefault(record.num, {"issueId": str(record.id), "changeHistories": []})
        group["changeHistories"].append(history_json(call.ctx, record, index, history))
    payload: dict[str, Any] = {"issueChangeLogs": list(grouped.values())}
    if offset + max_results < len(entries):
        payload["nextPageToken"] = base64.urlsafe_b64encode(str(offset + max_results).encode()).decode().rstrip("=")
    return Response.json(payload)


# ---------------------------------------------------------------- worklogs


def issue_worklogs(call: Call) -> Response:
    record = call.issue(call.params["key"])
    start_at, max_results = call.int_arg("startAt", 0), min(call.int_arg("maxResults", 5000), 5000)
    worklogs = call.site.worklogs(record)
    page = worklogs[start_at : start_at + max_results]
    return Response.json(
        {
            "startAt": start_at,
            "maxResults": max_results,
            "total": len(worklogs),
            "worklogs": [worklog_json(call.ctx, record, w) for w in page],
        }
    )


def worklogs_updated(call: Call) -> Response:
    since_ms = call.int_arg("since", 0)
    settled = call.site.now_epoch - WORKLOG_SETTLE_SECONDS
    entries = call.site.worklogs_updated_since(since_ms / 1000.0, settled)
    page = entries[:WORKLOG_PAGE]
    # Never split equal timestamps across pages: the next page starts strictly after `until`.
    while len(page) < len(entries) and page and entries[len(page)][0] == page[-1][0]:
        page.append(entries[len(page)])
    last_page = len(page) == len(entries)
    until_ms = int(round(page[-1][0] * 1000)) if page else int(settled * 1000)
    base = f"{call.ctx.rest}/worklog/updated"
    payload: dict[str, Any] = {
        "values": [
            {"worklogId": worklog_id, "updatedTime": int(round(updated * 1000)), "properties": []}
            for updated, worklog_id in page
        ],
        "since": since_ms,
        "until": until_ms,
        "self": f"{base}?since={since_ms}",
        "lastPage": last_page,
    }
    if not last_page:
        payload["nextPage"] = f"{base}?since={until_ms}"
    return Response.json(payload)


def worklog_list(call: Call) -> Response:
    ids = call.json_body().get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) or str(i).isdigit() for i in ids):
        raise ApiError(400, "ids must be a list of worklog ids.")
    if len(ids) > WORKLOG_LIST_CAP:
        raise ApiError(400, f"The number of worklog ids exceeds the limit of {WORKLOG_LIST_CAP}.")
    found = []
    for worklog_id in ids:
        hit = call.site.worklog(int(worklog_id))
        if hit is not None and call.app.visible(hit[0]):
            found.append(worklog_json(call.ctx, *hit))
    return Response.json(found)


USER_SCOPE = ("read:jira-user",)
ROUTES = [
    route("GET", "api/{v}/serverInfo", server_info, scopes=()),
    route("GET", "api/{v}/myself", myself, scopes=USER_SCOPE),
    route("GET", "api/{v}/field", fields),
    route("GET", "api/{v}/project", projects),
    route("GET", "api/{v}/project/search", project_search, flavours=("cloud",)),
    route("GET", "api/{v}/project/{key}", project),
    route("GET", "api/{v}/project/{key}/components", components),
    route("GET", "api/{v}/status", statuses),
    route("GET", "api/{v}/issuetype", issue_types),
    route("GET", "api/{v}/priority", priorities),
    route("GET", "api/{v}/issue/{key}/changelog", issue_changelog, flavours=("cloud",)),
    route("POST", "api/{v}/changelog/bulkfetch", bulk_changelog, flavours=("cloud",)),
    route("GET", "api/{v}/issue/{key}/worklog", issue_worklogs),
    route("GET", "api/{v}/worklog/updated", worklogs_updated),
    route("POST", "api/{v}/worklog/list", worklog_list),
]
