"""Jira's JSON shapes for issues, fields, changelogs and worklogs, built from compact records on demand.

Cloud and Data Center differ where Jira does: v3 rich text is Atlassian Document Format (v2 plain text);
users carry `accountId` on Cloud and `name`/`key` on Data Center; change items carry `fieldId` on Cloud
only; the Sprint field holds objects on Cloud and `...Sprint@hash[id=..]` strings on Data Center; Data
Center links stories to epics through "Epic Link", Cloud through `parent`. Only requested fields are built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.records import (
    History,
    IssueRecord,
    SprintRecord,
    WorklogRecord,
    jira_time,
)

SUMMARY_WORDS = ("checkout", "login", "export", "search", "billing", "sync", "report", "upload", "alerts", "cache")
ISSUE_EXPAND = "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations"


@dataclass(frozen=True)
class RenderContext:
    site: JiraSite
    base_url: str  # what `self` links start with
    cloud: bool
    api: str  # "2" or "3"
    live_nulls: bool = False  # emit null change-item sides (live Jira) instead of omitting them (the spec)

    @property
    def rest(self) -> str:
        return f"{self.base_url}/rest/api/{self.api}"

    def rich_text(self, text: str) -> Any:
        if self.api == "2":
            return text
        return {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
        }


def avatar_urls(base: str, kind: str, ident: str) -> dict[str, str]:
    return {f"{n}x{n}": f"{base}/secure/{kind}avatar?size={n}&id={ident}" for n in (16, 24, 32, 48)}


def user_json(ctx: RenderContext, index: int) -> dict[str, Any]:
    account_id, display_name, username = catalog.USERS[index]
    if ctx.cloud:
        return {
            "self": f"{ctx.rest}/user?accountId={account_id}",
            "accountId": account_id,
            "displayName": display_name,
            "active": True,
            "timeZone": "UTC",
            "accountType": "atlassian",
            "avatarUrls": avatar_urls(ctx.base_url, "user", account_id),
        }
    return {
        "self": f"{ctx.rest}/user?username={username}",
        "name": username,
        "key": f"JIRAUSER{10000 + index}",
        "displayName": display_name,
        "emailAddress": f"{username}@example.com",
        "active": True,
        "timeZone": "UTC",
        "avatarUrls": avatar_urls(ctx.base_url, "user", username),
    }


def status_json(ctx: RenderContext, status: catalog.Status) -> dict[str, Any]:
    category = status.category
    return {
        "self": f"{ctx.rest}/status/{status.id}",
        "description": "",
        "iconUrl": f"{ctx.base_url}/images/icons/statuses/generic.png",
        "name": status.name,
        "id": status.id,
        "statusCategory": {
            "self": f"{ctx.rest}/statuscategory/{category.id}",
            "id": category.id,
            "key": category.key,
            "colorName": category.color,
            "name": category.name,
        },
    }


def issuetype_json(ctx: RenderContext, issue_type: catalog.IssueType) -> dict[str, Any]:
    return {
        "self": f"{ctx.rest}/issuetype/{issue_type.id}",
        "id": issue_type.id,
        "description": "",
        "iconUrl": f"{ctx.base_url}/images/icons/issuetypes/{issue_type.name.lower()}.svg",
        "name": issue_type.name,
        "subtask": issue_type.subtask,
        "avatarId": 10300 + int(issue_type.id) % 100,
        "hierarchyLevel": issue_type.hierarchy_level,
    }


def project_ref_json(ctx: RenderContext, project: catalog.ProjectSpec) -> dict[str, Any]:
    return {
        "self": f"{ctx.rest}/project/{project.id}",
        "id": project.id,
        "key": project.key,
        "name": project.name,
        "projectTypeKey": project.type_key,
        "simplified": False,
        "avatarUrls": avatar_urls(ctx.base_url, "project", project.id),
    }


def priority_json(ctx: RenderContext, index: int) -> dict[str, Any]:
    priority = catalog.PRIORITIES[index]
    return {
        "self": f"{ctx.rest}/priority/{priority.id}",
        "iconUrl": f"{ctx.base_url}/images/icons/priorities/{priority.name.lower()}.svg",
        "name": priority.name,
        "id": priority.id,
    }


def component_ref_json(ctx: RenderContext, project: catalog.ProjectSpec, index: int) -> dict[str, Any]:
    component_id = str(10000 + int(project.id) % 100 * 10 + index)
    return {"self": f"{ctx.rest}/component/{component_id}", "id": component_id, "name": project.components[index]}


def sprint_field_value(ctx: RenderContext, sprint: SprintRecord) -> Any:
    if ctx.cloud:
        value: dict[str, Any] = {
            "id": sprint.id,
            "name": sprint.name,
            "state": sprint.state,
            "boardId": sprint.board_id,
            "goal": sprint.goal,
        }
        for key, moment in (("startDate", sprint.start), ("endDate", sprint.end), ("completeDate", sprint.complete)):
            if moment is not None:
                value[key] = jira_time(moment)
        return value
    parts = [
        f"id={sprint.id}",
        f"rapidViewId={sprint.board_id}",
        f"state={sprint.state.upper()}",
        f"name={sprint.name}",
    ]
    parts += [
        f"{key}={jira_time(moment) or '<null>'}"
        for key, moment in (("startDate", sprint.start), ("endDate", sprint.end), ("completeDate", sprint.complete))
    ]
    parts += [f"sequence={sprint.id}", f"goal={sprint.goal}"]
    return f"com.atlassian.greenhopper.service.sprint.Sprint@{sprint.id:x}f[{','.join(parts)}]"


def issue_ref_json(ctx: RenderContext, record: IssueRecord) -> dict[str, Any]:
    """The short form Jira nests for parents and sub-tasks."""
    return {
        "id": str(record.id),
        "key": ctx.site.key_of(record),
        "self": f"{ctx.rest}/issue/{record.id}",
        "fields": {
            "summary": summary_of(ctx.site, record),
            "status": status_json(ctx, catalog.STATUS_BY_ID[record.status_id]),
            "priority": priority_json(ctx, record.priority),
            "issuetype": issuetype_json(ctx, catalog.ISSUE_TYPES[record.type]),
        },
    }


def summary_of(site: JiraSite, record: IssueRecord) -> str:
    words = (SUMMARY_WORDS[record.num % len(SUMMARY_WORDS)], SUMMARY_WORDS[(record.num * 7 + 3) % len(SUMMARY_WORDS)])
    return f"{catalog.ISSUE_TYPES[record.type].name}: improve {words[0]} {words[1]} #{record.key_num}"


def time_spent_text(seconds: int) -> str:
    """Jira's time-tracking format with its default 8-hour days and 5-day weeks: `1d 2h 30m`."""
    parts, remaining = [], seconds // 60
    for unit, minutes in (("w", 5 * 8 * 60), ("d", 8 * 60), ("h", 60), ("m", 1)):
        if remaining >= minutes:
            parts.append(f"{remaining // minutes}{unit}")
            remaining %= minutes
    return " ".join(parts) or "0m"


def worklog_json(ctx: RenderContext, record: IssueRecord, worklog: WorklogRecord) -> dict[str, Any]:
    return {
        "self": f"{ctx.rest}/issue/{record.id}/worklog/{worklog.id}",
        "author": user_json(ctx, worklog.author),
        "updateAuthor": user_json(ctx, worklog.author),
        "comment": ctx.rich_text(f"Worked on it. {ctx.site.worklog_canary}"),
        "created": jira_time(worklog.created),
        "updated": jira_time(worklog.updated),
        "started": jira_time(worklog.started),
        "timeSpent": time_spent_text(worklog.seconds),
        "timeSpentSeconds": worklog.seconds,
        "id": str(worklog.id),
        "issueId": str(record.id),
    }


def change_item_json(ctx: RenderContext, item: tuple) -> dict[str, Any]:
    field_id, old, old_text, new, new_text = item
    spec = catalog.FIELD_BY_ID[field_id]
    payload: dict[str, Any] = {
        "field": spec.display_name(ctx.cloud) if spec.is_custom else field_id,
        "fieldtype": "custom" if spec.is_custom else "jira",
    }
    if ctx.cloud:
        payload["fieldId"] = field_id
    for key, value in (("from", old), ("fromString", old_text), ("to", new), ("toString", new_text)):
        # The published schema types these as plain strings; live Jira sends null. See `live_nulls`.
        if value is not None or ctx.live_nulls:
            payload[key] = value
    return payload


def history_json(ctx: RenderContext, record: IssueRecord, index: int, history: History) -> dict[str, Any]:
    return {
        "id": str((record.num + 1) * 10_000 + index),
        "author": user_json(ctx, history.author),
        "created": jira_time(history.at),
        "items": [change_item_json(ctx, item) for item in history.items],
    }
