"""Readers shared by the Jira metric reducers: Jira timestamps as aware UTC datetimes, an issue's change
histories in time order (refusing a changelog Jira truncated), and field timelines, i.e. a field's value
at any moment replayed from the changelog. Pure: no I/O, no Dagster, no client library."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Generic, TypeVar

from dfx_pipelines.platform.errors import DfxError

T = TypeVar("T")

JsonObject = Mapping[str, Any]


class JiraDataError(DfxError):
    """Jira JSON that cannot be read without guessing: a timestamp without offset, a truncated changelog,
    a missing required field. The message names the issue or value, never a credential."""


def parse_jira_timestamp(text: str) -> datetime:
    """`2024-01-31T12:34:56.000+0000`, `...Z` or `...+01:00` as an aware UTC datetime."""
    try:
        parsed = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise JiraDataError(f"not a Jira timestamp: {text!r}") from None
    # A naive time would silently land on the wrong UTC day; Jira always sends an offset.
    if parsed.tzinfo is None:
        raise JiraDataError(f"Jira timestamp without a UTC offset: {text!r}")
    return parsed.astimezone(UTC)


def parse_optional_timestamp(text: str | None) -> datetime | None:
    return None if text in (None, "") else parse_jira_timestamp(text)


def utc_day(moment: datetime) -> date:
    return moment.astimezone(UTC).date()


def days_in_range(first: date, last: date) -> Iterator[date]:
    """Every day from `first` to `last`, both included."""
    if last < first:
        raise ValueError(f"date range ends ({last}) before it starts ({first})")
    for offset in range((last - first).days + 1):
        yield first + timedelta(days=offset)


@dataclass(frozen=True, slots=True)
class ChangeHistory:
    """One changelog entry: when it happened and the field changes it made (ChangeDetails dicts)."""

    at: datetime
    items: tuple[JsonObject, ...]


def change_histories(issue_json: JsonObject, histories: Sequence[JsonObject] | None = None) -> list[ChangeHistory]:
    """The issue's changelog in time order (stable for equal timestamps, as Jira lists them).

    `histories` overrides the embedded `changelog.histories`: pass the full list fetched from
    `/issue/{key}/changelog` (`values`) or `/changelog/bulkfetch` (`changeHistories`). The embedded one is
    refused when Jira truncated it, because replaying part of a history gives wrong stage dates."""
    if histories is None:
        changelog = issue_json.get("changelog") or {}
        histories = changelog.get("histories") or []
        total = changelog.get("total")
        if total is not None and total > len(histories):
            raise JiraDataError(
                f"issue {issue_json.get('key')}: embedded changelog holds {len(histories)} of {total} histories; "
                "fetch the full changelog and pass it as `histories`"
            )
    parsed = [ChangeHistory(parse_jira_timestamp(h["created"]), tuple(h.get("items") or ())) for h in histories]
    parsed.sort(key=lambda history: history.at)
    return parsed


def item_is_field(item: JsonObject, field_id: str, field_name: str | None) -> bool:
    """Whether a change item is about the field. Cloud items carry `fieldId`; Data Center items carry
    only the field's display name in `field`, so the name is the fallback (case-insensitive)."""
    item_field_id = item.get("fieldId")
    if item_field_id is not None:
        return item_field_id == field_id
    return field_name is not None and str(item.get("field") or "").lower() == field_name.lower()


@dataclass(frozen=True, slots=True)
class Timeline(Generic[T]):
    """A field's value over an issue's life: `initial` until the first change, then each change's value."""

    initial: T
    change_times: tuple[datetime, ...] = ()
    change_values: tuple[T, ...] = ()

    def value_at(self, moment: datetime) -> T:
        """The value after every change made at or before `moment` (a change at exactly `moment` counts)."""
        applied = bisect.bisect_right(self.change_times, moment)
        return self.change_values[applied - 1] if applied else self.initial

    def all_values(self) -> tuple[T, ...]:
        return (self.initial, *self.change_values)


def field_timeline(
    histories: Sequence[ChangeHistory],
    field_id: str,
    field_name: str | None,
    read_value: Callable[[JsonObject, str], T],
    current_value: T,
) -> Timeline[T]:
    """Replay one field. As jira-agile-metrics does, the value at creation is the `from` side of the
    field's first change, or the current value when the field never changed (creation values are not
    in Jira's changelog). `read_value(item, "from" | "to")` reads one side of a change item."""
    times: list[datetime] = []
    values: list[T] = []
    initial: T = current_value
    for history in histories:
        for item in history.items:
            if not item_is_field(item, field_id, field_name):
                continue
            if not times:
                initial = read_value(item, "from")
            times.append(history.at)
            values.append(read_value(item, "to"))
    return Timeline(initial, tuple(times), tuple(values))


def required(issue_json: JsonObject, *path: str) -> Any:
    """A nested value that must be present, e.g. `required(issue, "fields", "created")`."""
    value: Any = issue_json
    for step in path:
        value = value.get(step) if isinstance(value, Mapping) else None
        if value is None:
            raise JiraDataError(f"issue {issue_json.get('key')}: missing {'.'.join(path)}")
    return value


def optional_name(value: Any) -> str | None:
    """The display value of a Jira field value: a plain scalar, or an object's `value`, `name`, `key`,
    `accountId` or `id` (first present). Select-list options carry `value`, most entities `name`."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        for key in ("value", "name", "key", "accountId", "id"):
            if value.get(key) not in (None, ""):
                return str(value[key])
        return None
    return str(value)
