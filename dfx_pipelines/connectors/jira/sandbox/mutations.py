"""Changes made to a running sandbox site: create issues, move status, change points or sprints, log work.

Every change is stamped with the site's clock, appends a changelog history the way Jira records it (a
status move into done also sets the resolution; out of done clears it) and bumps `updated`.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.plan import points_item, resolution_item, status_item
from dfx_pipelines.connectors.jira.sandbox.records import ChangeItem, History, IssueRecord, WorklogRecord

if TYPE_CHECKING:
    from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite

_UNSET: Any = object()


def _status(value: str) -> catalog.Status:
    for status in catalog.STATUSES:
        if value in (status.id, status.name) or value.lower() == status.name.lower():
            return status
    raise ValueError(f"unknown status {value!r}")


class SiteMutations:
    """Mixed into `JiraSite`. Its methods declare `self: JiraSite` (the class they run on); mypy accepts
    only supertypes there, hence the `type: ignore[misc]` on each."""

    def update_issue(  # type: ignore[misc]
        self: JiraSite,
        key: str,
        *,
        status: str | None = None,
        points: float | None = _UNSET,
        sprints: Iterable[int] | None = None,
        resolution: str = "Done",
        author: int = 0,
    ) -> IssueRecord:
        """Change an issue now. `points=None` clears the estimate; `sprints` is the whole new Sprint value."""
        with self.lock:
            record = self._require(key)
            items: list[ChangeItem] = []
            if status is not None:
                old, new = catalog.STATUS_BY_ID[record.status_id], _status(status)
                if new is not old:
                    items.append(status_item(old, new))
                    was_done, now_done = old.category is catalog.CATEGORY_DONE, new.category is catalog.CATEGORY_DONE
                    if now_done and not was_done:
                        chosen = next(r for r in catalog.RESOLUTIONS if r.name == resolution)
                        items.append(resolution_item(None, chosen))
                    elif was_done and not now_done and record.resolution >= 0:
                        items.append(resolution_item(catalog.RESOLUTIONS[record.resolution], None))
            if points is not _UNSET and points != record.points:
                items.append(points_item(record.points, None if points is None else float(points)))
            if sprints is not None:
                new_ids = tuple(int(s) for s in sprints)
                if new_ids != record.sprints:
                    items.append(self._sprint_change(record.sprints, new_ids))
            if items:
                self._append_history(record, tuple(items), author)
            return record

    def create_issue(  # type: ignore[misc]
        self: JiraSite,
        project: str,
        *,
        issuetype: str = "Story",
        points: float | None = None,
        parent: str | None = None,
        components: Iterable[str] = (),
        sprints: Iterable[int] = (),
    ) -> IssueRecord:
        """A new issue created now, in the project's first workflow status. Its creation values are not
        in the changelog (as in Jira); sprints given here are too."""
        with self.lock:
            project_index = self.project_index(project)
            if project_index is None:
                raise ValueError(f"unknown project {project!r}")
            spec = catalog.PROJECTS[project_index]
            issue_type = next(t for t in catalog.ISSUE_TYPES if t.name.lower() == issuetype.lower())
            parent_record = self._require(parent) if parent else None
            workflow = catalog.SERVICE_WORKFLOW if spec.type_key == "service_desk" else catalog.SOFTWARE_WORKFLOW
            record = IssueRecord(
                num=len(self.issues),
                project=project_index,
                key_num=self._next_key[project_index],
                type=catalog.ISSUE_TYPES.index(issue_type),
                created=self.now_epoch,
                parent=parent_record.num if parent_record else -1,
                components=tuple(spec.components.index(name) for name in components),
                priority=2,
                assignee=0,
                reporter=0,
                team=-1,
                tier=-1,
                labels=(),
                generated=False,
                status_id=workflow[0].id,
                resolution=-1,
                resolved=None,
                points=points,
                sprints=tuple(int(s) for s in sprints),
                updated=self.now_epoch,
                status_changed=self.now_epoch,
            )
            self._register(record)
            self.version += 1
            return record

    def add_worklog(  # type: ignore[misc]
        self: JiraSite,
        key: str,
        seconds: int,
        *,
        started: float | None = None,
        author: int = 0,
    ) -> WorklogRecord:
        with self.lock:
            record = self._require(key)
            existing = self.worklogs(record)
            index = len(existing)
            if index >= 100:
                raise ValueError("the sandbox keeps at most 100 worklogs per issue")
            now = self.now_epoch
            worklog = WorklogRecord(
                (record.num + 1) * 100 + index,
                started if started is not None else now - seconds,
                seconds,
                now,
                now,
                author,
            )
            record.extra_worklogs = (record.extra_worklogs or []) + [worklog]
            position = bisect.bisect_right(self._worklog_updated, now)
            self._worklog_updated.insert(position, now)
            self._worklog_ids.insert(position, worklog.id)
            record.updated = now
            self.version += 1
            return worklog

    # ------------------------------------------------------------ helpers

    def _require(self: JiraSite, key: str) -> IssueRecord:  # type: ignore[misc]
        record = self.find(key)
        if record is None:
            raise KeyError(f"no issue {key!r}")
        return record

    def _sprint_change(self: JiraSite, old: tuple[int, ...], new: tuple[int, ...]) -> ChangeItem:  # type: ignore[misc]
        def names(ids: tuple[int, ...]) -> str:
            return ", ".join(sprint.name for sprint_id in ids if (sprint := self.sprint(sprint_id)) is not None)

        return (catalog.SPRINT_FIELD, ", ".join(map(str, old)), names(old), ", ".join(map(str, new)), names(new))

    def _append_history(self: JiraSite, record: IssueRecord, items: tuple[ChangeItem, ...], author: int) -> None:  # type: ignore[misc]
        history = History(self.now_epoch, author, items)
        if len(self.histories(record)) >= 9_999:
            raise ValueError("the sandbox keeps at most 9,999 histories per issue")
        record.extra_histories = (record.extra_histories or []) + [history]
        self._apply_history(record, history)
        record.updated = self.now_epoch
        self.version += 1
