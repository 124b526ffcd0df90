"""Jira Software (agile 1.0) routes: boards, board configuration, sprints, sprint issues, epics."""

from __future__ import annotations

from typing import Any

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.api import ApiError, Call, page_values, route
from dfx_pipelines.connectors.jira.sandbox.issues import (
    NAVIGABLE_FIELD_IDS,
    issue_json,
    parse_fields_param,
    resolve_fields,
)
from dfx_pipelines.connectors.jira.sandbox.jql import parse
from dfx_pipelines.connectors.jira.sandbox.jql_eval import Compiler
from dfx_pipelines.connectors.jira.sandbox.jql_lexer import JqlError
from dfx_pipelines.connectors.jira.sandbox.records import SprintRecord, jira_time
from dfx_pipelines.platform.sandbox import Response

AGILE_PAGE = 50
SPRINT_ISSUES_CAP = 100
STATE_ORDER = {"closed": 0, "active": 1, "future": 2}  # Jira lists sprints closed, active, then future


def _agile(call: Call) -> str:
    return f"{call.ctx.base_url}/rest/agile/1.0"


def _boards(call: Call) -> list[tuple[int, catalog.ProjectSpec]]:
    return [(i, p) for i, p in enumerate(catalog.PROJECTS) if p.board is not None]


def _board_spec(project: catalog.ProjectSpec) -> tuple[int, str, str]:
    """(board id, name, type) of a project `_boards` listed (only projects with a board)."""
    if project.board is None:
        raise ApiError(404, "Board does not exist or you do not have permission to see it.")
    return project.board


def _board(call: Call) -> tuple[int, catalog.ProjectSpec]:
    board_id = call.params["board"]
    for index, project in _boards(call):
        if str(_board_spec(project)[0]) == board_id:
            if index in call.app.hidden_project_indexes:
                raise ApiError(403, f"You don't have permission to view board {board_id}.")
            return index, project
    raise ApiError(404, "Board does not exist or you do not have permission to see it.")


def board_json(call: Call, project: catalog.ProjectSpec) -> dict[str, Any]:
    board_id, name, board_type = _board_spec(project)
    return {
        "id": board_id,
        "self": f"{_agile(call)}/board/{board_id}",
        "name": name,
        "type": board_type,
        "isPrivate": False,
        "location": {
            "projectId": int(project.id), "displayName": f"{project.name} ({project.key})", "projectName": project.name,
            "projectKey": project.key, "projectTypeKey": project.type_key, "name": f"{project.name} ({project.key})",
            "avatarURI": f"{call.ctx.base_url}/rest/api/2/universal_avatar/view/type/project/avatar/{project.id}?size=small",
        },
    }  # fmt: skip


def boards(call: Call) -> Response:
    wanted_project, wanted_type, wanted_name = call.arg("projectKeyOrId"), call.arg("type"), call.arg("name")
    chosen = []
    for index, project in _boards(call):
        if index in call.app.hidden_project_indexes:
            continue
        if wanted_project and wanted_project.upper() not in (project.key, project.id):
            continue
        if wanted_type and _board_spec(project)[2] not in wanted_type.split(","):
            continue
        if wanted_name and wanted_name.lower() not in _board_spec(project)[1].lower():
            continue
        chosen.append(board_json(call, project))
    start_at, max_results = (
        call.int_arg("startAt", 0),
        min(call.int_arg("maxResults", AGILE_PAGE, minimum=1), AGILE_PAGE),
    )
    return Response.json(page_values(chosen, start_at, max_results))


def board(call: Call) -> Response:
    return Response.json(board_json(call, _board(call)[1]))


def board_configuration(call: Call) -> Response:
    _, project = _board(call)
    board_id, name, board_type = _board_spec(project)
    columns = [
        {
            "name": column,
            "statuses": [{"id": s.id, "self": f"{call.ctx.base_url}/rest/api/2/status/{s.id}"} for s in statuses],
        }
        for column, statuses in catalog.SOFTWARE_COLUMNS
    ]
    payload: dict[str, Any] = {
        "id": board_id,
        "name": name,
        "type": board_type,
        "self": f"{_agile(call)}/board/{board_id}/configuration",
        "location": {"type": "project", "projectKeyOrId": project.id},
        "filter": {"id": str(10000 + board_id), "self": f"{call.ctx.base_url}/rest/api/2/filter/{10000 + board_id}"},
        "columnConfig": {"columns": columns, "constraintType": "none"},
        "ranking": {"rankCustomFieldId": 10019},
    }
    if board_type == "kanban":
        payload["subQuery"] = {"query": "resolution = EMPTY OR resolution changed AFTER -2w"}
    else:
        field_name = catalog.FIELD_BY_ID[catalog.STORY_POINTS_FIELD].display_name(call.cloud)
        payload["estimation"] = {
            "type": "field",
            "field": {"fieldId": catalog.STORY_POINTS_FIELD, "displayName": field_name},
        }
    return Response.json(payload)


def sprint_json(call: Call, sprint: SprintRecord) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "id": sprint.id,
        "self": f"{_agile(call)}/sprint/{sprint.id}",
        "state": sprint.state,
        "name": sprint.name,
    }
    for key, moment in (
        ("startDate", sprint.start),
        ("endDate", sprint.end),
        ("completeDate", sprint.complete),
        ("createdDate", sprint.created),
    ):
        if moment is not None:
            payload[key] = jira_time(moment)
    payload.update({"originBoardId": sprint.board_id, "goal": sprint.goal})
    return payload


def board_sprints(call: Call) -> Response:
    _, project = _board(call)
    if _board_spec(project)[2] != "scrum":
        raise ApiError(400, "The board does not support sprints")
    states = {s.strip().lower() for s in (call.arg("state") or "").split(",") if s.strip()}
    unknown = states - set(STATE_ORDER)
    if unknown:
        raise ApiError(
            400, f"The sprint state '{sorted(unknown)[0]}' is not valid. Valid states are: future, active, closed."
        )
    chosen = [
        s for s in call.site.sprints if s.board_id == _board_spec(project)[0] and (not states or s.state in states)
    ]
    chosen.sort(key=lambda s: (STATE_ORDER[s.state], s.id))
    start_at, max_results = (
        call.int_arg("startAt", 0),
        min(call.int_arg("maxResults", AGILE_PAGE, minimum=1), AGILE_PAGE),
    )
    return Response.json(page_values([sprint_json(call, s) for s in chosen], start_at, max_results))


def _sprint(call: Call) -> SprintRecord:
    sprint = call.site.sprint(int(call.params["sprint"])) if call.params["sprint"].isdigit() else None
    if sprint is None:
        raise ApiError(
            404, f"Sprint with id {call.params['sprint']} does not exist or you do not have permission to see it."
        )
    board_project = next(i for i, p in enumerate(catalog.PROJECTS) if p.board and p.board[0] == sprint.board_id)
    if board_project in call.app.hidden_project_indexes:
        raise ApiError(403, "You don't have permission to view this sprint.")
    return sprint


def sprint(call: Call) -> Response:
    return Response.json(sprint_json(call, _sprint(call)))


def sprint_issues(call: Call) -> Response:
    """Issues whose Sprint field holds the sprint now (Jira keeps closed sprints in the field)."""
    target = _sprint(call)
    requested = parse_fields_param(call.args("fields"))
    expand = frozenset(e.strip() for e in (call.arg("expand") or "").split(",") if e.strip())
    call.app.record_fields(call, requested, expand)
    field_ids = resolve_fields(requested, NAVIGABLE_FIELD_IDS)  # default: all navigable fields
    predicate = lambda record: True  # noqa: E731
    if call.arg("jql"):
        try:
            query = parse(call.arg("jql") or "")
            if query.where is not None:
                predicate = Compiler(call.site, call.app.hidden_project_indexes).compile(query.where)
        except JqlError as exc:
            raise ApiError(400, str(exc)) from None
    with call.site.lock:
        matched = [r for r in call.site.issues if target.id in r.sprints and call.app.visible(r) and predicate(r)]
    start_at = call.int_arg("startAt", 0)
    max_results = min(call.int_arg("maxResults", AGILE_PAGE, minimum=1), SPRINT_ISSUES_CAP)
    page = matched[start_at : start_at + max_results]
    limit = call.app.embedded_changelog_limit
    return Response.json({
        "expand": "schema,names", "startAt": start_at, "maxResults": max_results, "total": len(matched),
        "issues": [issue_json(call.ctx, r, field_ids, expand=expand, changelog_limit=limit) for r in page],
    })  # fmt: skip


def board_epics(call: Call) -> Response:
    project_index, _ = _board(call)
    done_filter = call.arg("done")
    values = []
    for record in call.site.issues:
        if record.project != project_index or catalog.ISSUE_TYPES[record.type] is not catalog.EPIC:
            continue
        done = catalog.STATUS_BY_ID[record.status_id].category is catalog.CATEGORY_DONE
        if done_filter is not None and str(done).lower() != done_filter.lower():
            continue
        key = call.site.key_of(record)
        values.append({
            "id": record.id, "key": key, "self": f"{_agile(call)}/epic/{record.id}", "name": f"Epic {key}",
            "summary": f"Epic {record.key_num}", "color": {"key": f"color_{record.num % 14 + 1}"}, "done": done,
        })  # fmt: skip
    start_at, max_results = (
        call.int_arg("startAt", 0),
        min(call.int_arg("maxResults", AGILE_PAGE, minimum=1), AGILE_PAGE),
    )
    return Response.json(page_values(values, start_at, max_results))


BOARD_SCOPES = ("read:board-scope:jira-software", "read:project:jira")
ROUTES = [
    route("GET", "agile/1.0/board", boards, scopes=BOARD_SCOPES),
    route("GET", "agile/1.0/board/{board}", board, scopes=BOARD_SCOPES),
    route(
        "GET",
        "agile/1.0/board/{board}/configuration",
        board_configuration,
        scopes=("read:board-scope.admin:jira-software", "read:project:jira"),
    ),
    route("GET", "agile/1.0/board/{board}/sprint", board_sprints, scopes=("read:sprint:jira-software",)),
    route("GET", "agile/1.0/board/{board}/epic", board_epics, scopes=("read:epic:jira-software",)),
    route("GET", "agile/1.0/sprint/{sprint}", sprint, scopes=("read:sprint:jira-software",)),
    route(
        "GET",
        "agile/1.0/sprint/{sprint}/issue",
        sprint_issues,
        scopes=("read:sprint:jira-software", "read:issue-details:jira", "read:jql:jira"),
    ),
]
