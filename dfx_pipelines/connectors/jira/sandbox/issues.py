"""An issue as Jira returns it: the `fields` parameter resolved as Jira does, then only those fields built.

`fields` takes ids (`summary,status,customfield_10016`), `*all`, `*navigable` and `-id` exclusions;
unknown ids are ignored, as Jira ignores them. Requested fields without a value come back as null.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dfx_pipelines.connectors.jira.sandbox import catalog, sla
from dfx_pipelines.connectors.jira.sandbox.records import IssueRecord, jira_time
from dfx_pipelines.connectors.jira.sandbox.render import (
    ISSUE_EXPAND,
    RenderContext,
    component_ref_json,
    history_json,
    issue_ref_json,
    issuetype_json,
    priority_json,
    project_ref_json,
    sprint_field_value,
    status_json,
    summary_of,
    user_json,
    worklog_json,
)

ALL_FIELD_IDS = tuple(spec.id for spec in catalog.FIELDS)
NAVIGABLE_FIELD_IDS = tuple(spec.id for spec in catalog.FIELDS if spec.navigable)


def parse_fields_param(values: Iterable[str] | None) -> list[str]:
    """`fields` as sent: repeated parameters and/or comma-separated lists, in order, without blanks."""
    result: list[str] = []
    for value in values or ():
        result += [part.strip() for part in str(value).split(",") if part.strip()]
    return result


def resolve_fields(requested: list[str], default: tuple[str, ...]) -> tuple[str, ...]:
    """The field ids to return, in catalog order. `default` applies when nothing was requested."""
    if not requested:
        requested = list(default)
    chosen: set[str] = set()
    for entry in requested:
        if entry in ("*all", "*navigable"):
            chosen |= set(ALL_FIELD_IDS if entry == "*all" else NAVIGABLE_FIELD_IDS)
        elif not entry.startswith("-") and entry in catalog.FIELD_BY_ID:
            chosen.add(entry)
    for entry in requested:
        if entry.startswith("-"):
            chosen.discard(entry[1:])
    return tuple(field_id for field_id in ALL_FIELD_IDS if field_id in chosen)


def field_value(ctx: RenderContext, record: IssueRecord, field_id: str) -> Any:
    site = ctx.site
    project = catalog.PROJECTS[record.project]
    issue_type = catalog.ISSUE_TYPES[record.type]
    if field_id == "summary":
        return summary_of(site, record)
    if field_id == "issuetype":
        return issuetype_json(ctx, issue_type)
    if field_id == "project":
        return project_ref_json(ctx, project)
    if field_id == "status":
        return status_json(ctx, catalog.STATUS_BY_ID[record.status_id])
    if field_id == "statuscategorychangedate":
        return jira_time(record.status_changed)
    if field_id == "priority":
        return priority_json(ctx, record.priority)
    if field_id == "resolution":
        if record.resolution < 0:
            return None
        resolution = catalog.RESOLUTIONS[record.resolution]
        return {
            "self": f"{ctx.rest}/resolution/{resolution.id}",
            "id": resolution.id,
            "description": "",
            "name": resolution.name,
        }
    if field_id == "resolutiondate":
        return jira_time(record.resolved)
    if field_id == "created":
        return jira_time(record.created)
    if field_id == "updated":
        return jira_time(record.updated)
    if field_id in ("assignee", "reporter"):
        return user_json(ctx, getattr(record, field_id))
    if field_id == "labels":
        return list(record.labels)
    if field_id == "components":
        return [component_ref_json(ctx, project, index) for index in record.components]
    if field_id == "parent":
        # Cloud shows the epic (or a sub-task's parent) here; Data Center only a sub-task's parent.
        if record.parent < 0 or (not ctx.cloud and not issue_type.subtask):
            return None
        return issue_ref_json(ctx, site.issues[record.parent])
    if field_id == "subtasks":
        return [issue_ref_json(ctx, site.issues[num]) for num in site.subtasks.get(record.num, ())]
    if field_id == "description":
        return ctx.rich_text(f"Steps to reproduce are confidential. {site.canary}")
    if field_id == "comment":
        comments = [
            {
                "self": f"{ctx.rest}/issue/{record.id}/comment/{comment.id}",
                "id": str(comment.id),
                "author": user_json(ctx, comment.author),
                "body": ctx.rich_text(f"Customer says: private details. {site.canary}"),
                "updateAuthor": user_json(ctx, comment.author),
                "created": jira_time(comment.created),
                "updated": jira_time(comment.created),
            }
            for comment in site.comments(record)
        ]
        return {
            "comments": comments,
            "self": f"{ctx.rest}/issue/{record.id}/comment",
            "maxResults": len(comments),
            "total": len(comments),
            "startAt": 0,
        }
    if field_id == "attachment":
        if record.num % 4:
            return []
        return [
            {
                "self": f"{ctx.rest}/attachment/{record.id}",
                "id": str(record.id),
                "filename": f"{site.canary}-logs.txt",
                "author": user_json(ctx, record.reporter),
                "created": jira_time(record.created),
                "size": 2048,
                "mimeType": "text/plain",
                "content": f"{ctx.base_url}/secure/attachment/{record.id}/{site.canary}-logs.txt",
            }
        ]
    if field_id == "worklog":
        worklogs = site.worklogs(record)
        shown = [worklog_json(ctx, record, w) for w in worklogs[:20]]
        return {"startAt": 0, "maxResults": 20, "total": len(worklogs), "worklogs": shown}
    if field_id == catalog.STORY_POINTS_FIELD:
        return record.points
    if field_id == catalog.TEAM_FIELD:
        if record.team < 0:
            return None
        team_id, name = catalog.TEAMS[record.team]
        return {"id": team_id, "name": name, "title": name, "isShared": True, "isVisible": True}
    if field_id == catalog.SPRINT_FIELD:
        sprints = [site.sprint(sprint_id) for sprint_id in record.sprints]
        return [sprint_field_value(ctx, sprint) for sprint in sprints if sprint is not None] or None
    if field_id == catalog.EPIC_LINK_FIELD:
        if ctx.cloud or record.parent < 0 or issue_type.subtask:
            return None
        return site.key_of(site.issues[record.parent])
    if field_id == catalog.CUSTOMER_TIER_FIELD:
        if record.tier < 0:
            return None
        option_id, value = catalog.CUSTOMER_TIERS[record.tier]
        return {"self": f"{ctx.rest}/customFieldOption/{option_id}", "value": value, "id": option_id}
    if field_id in sla.SLA_FIELDS:
        return sla.sla_field_value(site, record, ctx.base_url, field_id)
    raise KeyError(field_id)


def issue_json(
    ctx: RenderContext,
    record: IssueRecord,
    field_ids: tuple[str, ...],
    *,
    expand: frozenset[str] = frozenset(),
    changelog_limit: int | None = None,
    id_only: bool = False,
) -> dict[str, Any]:
    """One issue. `changelog_limit` truncates an embedded changelog to its newest histories, as Jira's
    search does (`total` still counts them all)."""
    if id_only:
        return {"id": str(record.id)}
    payload: dict[str, Any] = {
        "expand": ISSUE_EXPAND,
        "id": str(record.id),
        "self": f"{ctx.rest}/issue/{record.id}",
        "key": ctx.site.key_of(record),
    }
    if "changelog" in expand:
        histories = ctx.site.histories(record)
        first = 0 if changelog_limit is None else max(0, len(histories) - changelog_limit)
        shown = [history_json(ctx, record, index, histories[index]) for index in range(first, len(histories))]
        payload["changelog"] = {"startAt": 0, "maxResults": len(shown), "total": len(histories), "histories": shown}
    payload["fields"] = {field_id: field_value(ctx, record, field_id) for field_id in field_ids}
    if "names" in expand:
        payload["names"] = field_names(ctx, field_ids)
    return payload


def field_names(ctx: RenderContext, field_ids: Iterable[str]) -> dict[str, str]:
    return {field_id: catalog.FIELD_BY_ID[field_id].display_name(ctx.cloud) for field_id in field_ids}


def field_schema(field_id: str) -> dict[str, Any]:
    spec = catalog.FIELD_BY_ID[field_id]
    schema: dict[str, Any] = {"type": spec.schema_type}
    if spec.items:
        schema["items"] = spec.items
    if spec.system:
        schema["system"] = spec.system
    if spec.custom:
        schema["custom"] = spec.custom
        schema["customId"] = spec.custom_id
    return schema


def field_details_json(ctx: RenderContext, spec: catalog.FieldSpec) -> dict[str, Any]:
    """One entry of `GET /field`."""
    payload: dict[str, Any] = {
        "id": spec.id,
        "key": spec.id,
        "name": spec.display_name(ctx.cloud),
        "custom": spec.is_custom,
        "orderable": spec.orderable,
        "navigable": spec.navigable,
        "searchable": spec.searchable,
        "clauseNames": list(spec.clause_names),
        "schema": field_schema(spec.id),
    }
    return payload
