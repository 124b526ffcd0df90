"""Which days' values a change to one issue can move, per daily metric, from the issue as it is now and its
changelog: the issue as it stood at the sensor's `since` is replayed from the histories before it, so a
reopened issue's old done day, its old resolved day and every WIP day between then and now are found.

- created_vs_resolved: the created day of an issue created since; the old and new resolved days when the
  resolution changed since (reopening clears `resolutiondate`, which un-counts the old day);
- throughput: the old and new done days (replayed stage dates, as `metrics_flow` computes them);
- wip: every day whose end-of-day WIP membership differs between the old and new replay (a reopened
  issue: from its old done day up to today);
- worklog_hours: the started days of the worklogs written since (all of them when the issue changed
  project, component or epic).
Pure: no I/O, no Dagster, no client library."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime, timedelta

from dfx_pipelines.connectors.jira.metrics_common import (
    ChangeHistory,
    JsonObject,
    parse_jira_timestamp,
    parse_optional_timestamp,
    utc_day,
)
from dfx_pipelines.connectors.jira.metrics_flow import CycleTimeRecord, IssueStatusHistory, Workflow, cycle_time_record


def status_history_as_of(history: IssueStatusHistory, moment: datetime) -> IssueStatusHistory | None:
    """The issue's status history as it stood at `moment`; None when it was created later."""
    if history.created >= moment:
        return None
    return replace(history, statuses=tuple(change for change in history.statuses if change.at < moment))


def _wip_member(record: CycleTimeRecord | None, day: date) -> bool:
    # As `metrics_flow.wip_rows` counts it: committed by the end of the day and not yet done.
    if record is None or record.committed_date is None or record.committed_date > day:
        return False
    return record.done_date is None or day < record.done_date


def _done_day(record: CycleTimeRecord | None) -> date | None:
    # As `metrics_flow.throughput_rows` counts it: on its done day, once it has a cycle time.
    return record.done_date if record is not None and record.cycle_time_days is not None else None


def flow_days_changed(
    history: IssueStatusHistory, workflow: Workflow, since: datetime, last_day: date
) -> dict[str, set[date]]:
    """{"throughput": days, "wip": days} whose values this issue's status changes since `since` move."""
    after = cycle_time_record(history, workflow)
    earlier = status_history_as_of(history, since)
    before = None if earlier is None else cycle_time_record(earlier, workflow)
    if before is not None and (before.committed_date, before.done_date, before.cycle_time_days) == (
        after.committed_date,
        after.done_date,
        after.cycle_time_days,
    ):
        return {"throughput": set(), "wip": set()}
    done_before, done_after = _done_day(before), _done_day(after)
    done_days = {d for d in (done_before, done_after) if d is not None} if done_before != done_after else set()
    starts = [d for r in (before, after) if r is not None for d in (r.committed_date, r.done_date) if d is not None]
    wip: set[date] = set()
    if starts:
        day = min(starts)
        while day <= last_day:
            if _wip_member(before, day) != _wip_member(after, day):
                wip.add(day)
            day += timedelta(days=1)
    return {"throughput": {d for d in done_days if d <= last_day}, "wip": wip}


def _is_resolution(item: JsonObject) -> bool:
    return (item.get("fieldId") or item.get("field")) == "resolution"


def resolved_days_changed(
    histories: Sequence[ChangeHistory], created: datetime, resolved_now: datetime | None, since: datetime
) -> set[date]:
    """The old and new resolved days when the resolution changed since `since` (else none): Jira's
    `resolutiondate` is when the resolution was last set, and clearing it clears the date."""
    changes = [(history.at, item) for history in histories for item in history.items if _is_resolution(item)]
    if not any(at >= since for at, _ in changes):
        return set()
    earlier = [(at, item) for at, item in changes if at < since]
    if earlier:
        at, item = earlier[-1]
        resolved_then = at if item.get("to") not in (None, "") else None
    else:
        # No change before `since`: resolved then only if it was created resolved (the first change's `from`).
        first = next(item for at, item in changes if at >= since)
        resolved_then = created if first.get("from") not in (None, "") and created < since else None
    return (
        {utc_day(moment) for moment in (resolved_then, resolved_now) if moment is not None}
        if resolved_then != resolved_now
        else set()
    )


def issue_resolved(issue_json: JsonObject) -> datetime | None:
    return parse_optional_timestamp((issue_json.get("fields") or {}).get("resolutiondate"))


# Changelog fields that move an issue's worklog hours to other dimensions (project, component, epic):
# by id (Cloud) or by display name (Data Center's change items carry only the name).
WORKLOG_DIMENSION_FIELDS = frozenset({"project", "components", "Component", "parent", "Parent", "Epic Link"})


def worklog_days(
    worklogs: Iterable[JsonObject],
    histories: Sequence[ChangeHistory],
    since: datetime,
    epic_link_field: str | None = None,
) -> set[date]:
    """The started days of worklogs written since `since` (a worklog logged today for last week moves
    last week); all of them when the issue's project, component or epic changed since. A worklog without
    its `updated` time counts as written since."""
    dimension_fields = WORKLOG_DIMENSION_FIELDS | ({epic_link_field} if epic_link_field else set())
    regrouped = any(
        history.at >= since and (item.get("fieldId") or item.get("field")) in dimension_fields
        for history in histories
        for item in history.items
    )
    return {
        utc_day(parse_jira_timestamp(worklog["started"]))
        for worklog in worklogs
        if regrouped or not worklog.get("updated") or parse_jira_timestamp(worklog["updated"]) >= since
    }
