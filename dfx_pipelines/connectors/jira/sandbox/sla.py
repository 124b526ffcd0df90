"""Jira Service Management SLAs of service-desk requests, replayed from each request's status history.

"Time to first response" runs from creation until the request first leaves Waiting for support.
"Time to resolution" runs from creation (and again from each reopening) until Resolved, paused while
Waiting for customer. Calendars are 24/7. Shapes follow `/rest/servicedeskapi/request/{key}/sla`.

`sla_values` is the one source of truth: the per-request endpoint lists it, and search returns each SLA
as the value of its `sd-sla-field` custom field (`catalog.FIRST_RESPONSE_SLA_FIELD`, `RESOLUTION_SLA_FIELD`)
when that field is named in `fields`, as Jira Service Management does.
"""

from __future__ import annotations

from typing import Any

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.api import Call, route
from dfx_pipelines.connectors.jira.sandbox.records import from_epoch, jira_time
from dfx_pipelines.platform.sandbox import Response

FIRST_RESPONSE_GOAL = 4 * 3600.0
RESOLUTION_GOAL = 48 * 3600.0


def _time(seconds: float) -> dict[str, Any]:
    moment = from_epoch(seconds)
    return {
        "iso8601": moment.strftime("%Y-%m-%dT%H:%M:%S+0000"),
        "jira": jira_time(seconds),
        "friendly": moment.strftime("%d/%b/%y %I:%M %p"),
        "epochMillis": int(round(seconds * 1000)),
    }


def _duration(seconds: float) -> dict[str, Any]:
    minutes = int(abs(seconds) // 60)
    text = (
        " ".join(
            part
            for part in (f"{minutes // 60}h" if minutes >= 60 else "", f"{minutes % 60}m" if minutes % 60 else "")
            if part
        )
        or "0m"
    )
    return {"millis": int(round(seconds * 1000)), "friendly": ("-" if seconds < 0 else "") + text}


def _status_timeline(site, record) -> list[tuple[float, str]]:
    """(when, status id entered), starting with the status at creation."""
    initial = catalog.SERVICE_WORKFLOW[0].id
    timeline = [(record.created, initial)]
    for history in site.histories(record):
        for field_id, old, _, new, _ in history.items:
            if field_id == "status":
                if len(timeline) == 1 and old:
                    timeline[0] = (record.created, str(old))
                timeline.append((history.at, str(new)))
    return timeline


def _cycle(start: float, stop: float | None, goal: float, elapsed: float, paused: bool, now: float) -> dict[str, Any]:
    remaining = goal - elapsed
    cycle: dict[str, Any] = {"startTime": _time(start)}
    if stop is not None:
        cycle["stopTime"] = _time(stop)
    cycle["breached"] = elapsed > goal
    if stop is None:
        if not paused:
            cycle["breachTime"] = _time(now + remaining)
        cycle.update({"paused": paused, "withinCalendarHours": True})
    cycle.update(
        {"goalDuration": _duration(goal), "elapsedTime": _duration(elapsed), "remainingTime": _duration(remaining)}
    )
    return cycle


def first_response(timeline: list[tuple[float, str]], now: float) -> tuple[list[dict], dict | None]:
    start = timeline[0][0]
    for at, status in timeline[1:]:
        if status != catalog.WAITING_FOR_SUPPORT.id:
            return [_cycle(start, at, FIRST_RESPONSE_GOAL, at - start, False, now)], None
    return [], _cycle(start, None, FIRST_RESPONSE_GOAL, now - start, False, now)


def resolution(timeline: list[tuple[float, str]], now: float) -> tuple[list[dict], dict | None]:
    completed: list[dict] = []
    start: float | None = timeline[0][0]
    elapsed, running_since = 0.0, timeline[0][0]
    paused = timeline[0][1] == catalog.WAITING_FOR_CUSTOMER.id
    for at, status in timeline[1:]:
        if start is None:
            if status != catalog.RESOLVED.id:  # reopened: a new cycle starts
                start, elapsed, running_since = at, 0.0, at
                paused = status == catalog.WAITING_FOR_CUSTOMER.id
            continue
        if not paused:
            elapsed += at - running_since
        running_since = at
        if status == catalog.RESOLVED.id:
            completed.append(_cycle(start, at, RESOLUTION_GOAL, elapsed, False, now))
            start = None
            continue
        paused = status == catalog.WAITING_FOR_CUSTOMER.id
    if start is None:
        return completed, None
    if not paused:
        elapsed += now - running_since
    return completed, _cycle(start, None, RESOLUTION_GOAL, elapsed, paused, now)


SLAS = (("1", "Time to first response", first_response), ("2", "Time to resolution", resolution))
SLA_FIELDS = {catalog.FIRST_RESPONSE_SLA_FIELD: "1", catalog.RESOLUTION_SLA_FIELD: "2"}


def is_service_request(record) -> bool:
    return catalog.PROJECTS[record.project].type_key == "service_desk"


def sla_values(site, record, base_url: str) -> list[dict[str, Any]]:
    """The request's SLAs as `/rest/servicedeskapi/request/{key}/sla` lists them (its `values`)."""
    timeline = _status_timeline(site, record)
    now = site.now_epoch
    base = f"{base_url}/rest/servicedeskapi/request/{record.id}/sla"
    values = []
    for sla_id, name, replay in SLAS:
        completed, ongoing = replay(timeline, now)
        value: dict[str, Any] = {
            "id": sla_id,
            "name": name,
            "_links": {"self": f"{base}/{sla_id}"},
            "completedCycles": completed,
        }
        if ongoing is not None:
            value["ongoingCycle"] = ongoing
        values.append(value)
    return values


def sla_field_value(site, record, base_url: str, field_id: str) -> dict[str, Any] | None:
    """Search's value of an SLA custom field: the same SLA object plus Jira's `slaDisplayFormat`; null
    on an issue outside a service desk."""
    if not is_service_request(record):
        return None
    wanted = SLA_FIELDS[field_id]
    value = next(v for v in sla_values(site, record, base_url) if v["id"] == wanted)
    return {**value, "slaDisplayFormat": "NEW_SLA_FORMAT"}


def request_sla(call: Call) -> Response:
    record = call.site.find(call.params["key"])
    if record is None or not call.app.visible(record) or not is_service_request(record):
        return Response.json({
            "errorMessage": "Request does not exist or you do not have permission to see it.",
            "i18nErrorMessage": {"i18nKey": "sd.request.error.not.found", "parameters": []},
        }, status=404)  # fmt: skip
    values = sla_values(call.site, record, call.ctx.base_url)
    base = f"{call.ctx.base_url}/rest/servicedeskapi/request/{record.id}/sla"
    return Response.json(
        {
            "size": len(values),
            "start": 0,
            "limit": 50,
            "isLastPage": True,
            "_links": {"self": base, "base": call.ctx.base_url, "context": ""},
            "values": values,
        }
    )


ROUTES = [route("GET", "servicedeskapi/request/{key}/sla", request_sla, scopes=("read:servicedesk-request",))]
