"""Field values in their three forms: stored in SQLite, written by API callers (JSON), and answered as JSON.

Stored: booleans 0/1, numbers as numbers, dates `YYYY-MM-DD` text, datetimes as integer seconds since the
epoch (UTC, whole seconds — compact, and comparison is time order). Answered: dates `YYYY-MM-DD`, datetimes `2024-01-31T12:00:00.000+0000`.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .errors import SalesforceApiError
from .ids import to_18
from .schema import KEY_PREFIXES, FieldDef

_DATETIME_TEXT = re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$")
_DATE_TEXT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def store_datetime(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


def load_datetime(stored: int) -> datetime:
    return datetime.fromtimestamp(int(stored), UTC)


def api_datetime(value: datetime) -> str:
    """Salesforce's JSON datetime: `2024-01-31T12:00:00.000+0000`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")


def parse_datetime_text(text: str, *, assume_utc: bool = True) -> datetime | None:
    """ISO 8601 with `Z`, `+hh:mm`, `+hhmm` or (if `assume_utc`) no zone; None when it is not one."""
    match = _DATETIME_TEXT.match(text.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    try:
        value = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second))
    except ValueError:
        return None
    if fraction:
        value = value.replace(microsecond=int(fraction[:6].ljust(6, "0")))
    if zone in (None, "Z"):
        if zone is None and not assume_utc:
            return None
        return value.replace(tzinfo=UTC)
    sign = 1 if zone[0] == "+" else -1
    digits = zone[1:].replace(":", "")
    offset_minutes = sign * (int(digits[:2]) * 60 + int(digits[2:]))
    return (value - timedelta(minutes=offset_minutes)).replace(tzinfo=UTC)


def json_value(field_type: str, stored: Any) -> Any:
    """A stored value as Salesforce's REST API answers it."""
    if stored is None:
        return None
    if field_type == "boolean":
        return bool(stored)
    if field_type == "int":
        return int(stored)
    if field_type in ("double", "currency", "percent"):
        return float(stored)
    if field_type == "datetime":
        return api_datetime(load_datetime(stored))
    return stored


def _bad_value(f: FieldDef, value: Any, expected: str) -> SalesforceApiError:
    return SalesforceApiError(
        400, "JSON_PARSER_ERROR", f"Cannot deserialize instance of {expected} from value {value!r} for field {f.name}"
    )


def coerce_for_write(f: FieldDef, value: Any) -> Any:
    """A caller's value for field `f` in stored form, or the error Salesforce would give."""
    if value is None:
        if not f.nillable and f.type != "boolean":
            raise SalesforceApiError(
                400, "REQUIRED_FIELD_MISSING", f"Required fields are missing: [{f.name}]", [f.name]
            )
        return 0 if f.type == "boolean" else None
    kind = f.type
    if kind == "boolean":
        if not isinstance(value, bool):
            raise _bad_value(f, value, "boolean")
        return int(value)
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise _bad_value(f, value, "int")
        return int(value)
    if kind in ("double", "currency", "percent"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _bad_value(f, value, "double")
        return float(value)
    if kind == "date":
        if isinstance(value, datetime):
            return value.date().isoformat()
        if isinstance(value, date):
            return value.isoformat()
        if isinstance(value, str) and _DATE_TEXT.match(value):
            try:
                return date.fromisoformat(value).isoformat()
            except ValueError:
                pass
        raise _bad_value(f, value, "date")
    if kind == "datetime":
        if isinstance(value, datetime):
            return store_datetime(value)
        parsed = parse_datetime_text(value) if isinstance(value, str) else None
        if parsed is None:
            raise _bad_value(f, value, "dateTime")
        return store_datetime(parsed)
    if not isinstance(value, str):
        raise _bad_value(f, value, "string")
    if kind in ("reference", "id"):
        if value == "":
            return None
        full = to_18(value)
        if full is None:
            raise SalesforceApiError(400, "MALFORMED_ID", f"{f.label}: id value of incorrect type: {value}", [f.name])
        if KEY_PREFIXES.get(full[:3]) not in f.reference_to:
            raise SalesforceApiError(
                400,
                "FIELD_INTEGRITY_EXCEPTION",
                f"{f.label}: id value of incorrect type: {value}",
                [f.name],
            )
        return full
    if f.length and len(value) > f.length:
        raise SalesforceApiError(
            400, "STRING_TOO_LONG", f"{f.label}: data value too large: {value[:40]} (max length={f.length})", [f.name]
        )
    return value
