"""Strict patterns for every identifier that reaches SOQL, SQL or JQL, checked once at the edge.

Identifiers are never escaped into a query: they either match the pattern for their kind and are used
as they are, or they are refused with an `IdentifierError` that names the kind and the bad value.
Values (as opposed to identifiers) go through each query language's own quoting instead.
"""

from __future__ import annotations

import re
import unicodedata

from dfx_pipelines.platform.errors import IdentifierError

# Salesforce API names: letters, digits and single underscores, starting with a letter; custom ones end in
# __c (objects, fields), __r (relationships), __mdt, __e, __x, __b; an optional namespace prefix `ns__`.
_SF_NAME = r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*"
_SF_SUFFIXES = ("c", "r", "mdt", "e", "x", "b", "kav", "ChangeEvent", "Share", "History", "Feed")
_SF_SUFFIX = rf"(?:__(?:{'|'.join(_SF_SUFFIXES)}))?"
SF_API_NAME = re.compile(rf"^(?:{_SF_NAME}__)?{_SF_NAME}{_SF_SUFFIX}$")
# Connection slug: also a Dagster dynamic partition key, so never `|` (multi-partition separator) or `,`.
CONNECTION_SLUG = re.compile(r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$")
WORKSPACE_ID = CONNECTION_SLUG
JIRA_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]*$")
JIRA_FIELD_ID = re.compile(r"^(?:[a-z][A-Za-z0-9]{0,63}|customfield_[0-9]{1,10})$")
BQ_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
BQ_DATASET_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BQ_TABLE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
BQ_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SQL_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# PostgreSQL schema, table, column and role names as an unquoted identifier folds them: lower-case ASCII
# letters, digits and underscores, at most NAMEDATALEN-1 = 63 bytes. Still always quoted by psycopg.sql.
PG_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# Schemas of the server itself: never customer data (pg_catalog, pg_toast, information_schema, …).
PG_SYSTEM_SCHEMA = re.compile(r"^(?:pg_.*|information_schema)$")
# `[0-9]`, never `\d` or `str.isdigit()`: those accept "²" or "٣", which `int()` then refuses or misreads.
ASCII_DIGITS = re.compile(r"^[0-9]+$")

# The vendors' own length limits. A longer name cannot exist at the vendor, so it is refused here with
# the limit named, rather than sent and answered with a confusing error (or silently truncated).
# - Salesforce: an object's or field's own name is at most 40 characters, not counting the `__c`-style
#   suffix Salesforce adds; a namespace prefix is 1–15 characters (Salesforce Help, "Create Custom
#   Fields"/"Create a Custom Object"; "Register a Namespace Prefix": "one to 15 alphanumeric characters").
#   Standard derived objects (`OpportunityChangeEvent`, `AccountHistory`) add their suffix to a name
#   that is itself within 40.
SF_NAME_MAX = 40
SF_NAMESPACE_MAX = 15
_SF_STANDARD_DERIVED = ("ChangeEvent", "FieldHistory", "History", "Share", "Feed")
# - Jira: Cloud project keys are at most 10 characters (Jira Cloud platform REST API v3,
#   CreateProjectDetails.key: "The maximum length is 10 characters"); Data Center lets an administrator
#   raise "Maximum project key size" to at most 255.
JIRA_CLOUD_KEY_MAX = 10
JIRA_DATACENTER_KEY_MAX = 255
# - BigQuery: dataset ids at most 1,024 characters (REST DatasetReference.datasetId); table ids at most
#   1,024 UTF-8 bytes (TableReference.tableId; the pattern is ASCII, so bytes = characters); column
#   names at most 300 characters ("Specify a schema" → Column names); project ids 6–30 characters.
BQ_DATASET_MAX = 1024
BQ_TABLE_MAX = 1024
BQ_COLUMN_MAX = 300
JIRA_BOARD_MAX = 2**31 - 1


def _check_text(kind: str, value: object) -> str:
    """An identifier is used exactly as given, or refused: never trimmed, never repaired. Surrounding
    whitespace (a pasted `Opportunity\n`, a `StageName\u00a0` from a spreadsheet) and any control or
    format character anywhere are refused, with the character named, so the customer sees what is wrong."""
    if not isinstance(value, str):
        raise IdentifierError(f"invalid {kind}: {value!r} (expected text, got {type(value).__name__})")
    if not value:
        raise IdentifierError(f"invalid {kind}: empty")
    if value != value.strip():
        raise IdentifierError(
            f"invalid {kind}: {value!r} has surrounding whitespace; identifiers are used exactly as typed, never trimmed"
        )
    for char in value:
        if unicodedata.category(char)[0] in ("C", "Z") and char != " ":
            raise IdentifierError(
                f"invalid {kind}: {value!r} contains the control or separator character U+{ord(char):04X}"
            )
    return value


def _check(
    pattern: re.Pattern[str], kind: str, value: object, max_length: int | None = None, limit_source: str = ""
) -> str:
    text = _check_text(kind, value)
    if max_length is not None and len(text) > max_length:
        raise IdentifierError(
            f"invalid {kind}: {len(text)} characters, longer than the {max_length} {limit_source} allows ({text[:40]!r}…)"
        )
    if not pattern.fullmatch(text):
        raise IdentifierError(f"invalid {kind}: {text!r} (must match {pattern.pattern})")
    return text


def salesforce_name(value: object) -> str:
    """A Salesforce object or field API name (`Opportunity`, `Amount`, `Deal_Review__c`)."""
    text = _check(SF_API_NAME, "Salesforce API name", value)
    parts = text.split("__")  # [name], [name, suffix], [namespace, name] or [namespace, name, suffix]
    if len(parts) == 2 and parts[1] not in _SF_SUFFIXES:
        parts.append("")
    namespace, name = (parts[0], parts[1]) if len(parts) == 3 else (None, parts[0])
    if namespace is not None and len(namespace) > SF_NAMESPACE_MAX:
        raise IdentifierError(
            f"invalid Salesforce API name: {text!r} has a {len(namespace)}-character namespace prefix; Salesforce allows at most {SF_NAMESPACE_MAX}"
        )
    own = name
    if len(parts) == 1:  # a standard name: a derived object's suffix is not part of its own name
        own = next((name[: -len(s)] for s in _SF_STANDARD_DERIVED if name.endswith(s) and len(name) > len(s)), name)
    if len(own) > SF_NAME_MAX:
        raise IdentifierError(
            f"invalid Salesforce API name: {text[:60]!r}… is {len(own)} characters before its suffix; Salesforce allows at most {SF_NAME_MAX}"
        )
    return text


def salesforce_field_path(value: object) -> str:
    """A field reference, optionally through relationships (`Account.Name`, `Owner__r.Region__c`)."""
    text = _check_text("Salesforce field path", value)
    if len(text.split(".")) > 5:
        raise IdentifierError(f"invalid Salesforce field path: {text!r} (at most 5 parts)")
    for part in text.split("."):
        try:
            salesforce_name(part)
        except IdentifierError as exc:
            raise IdentifierError(f"invalid Salesforce field path: {text!r} (bad part {part!r}: {exc})") from None
    return text


def connection_slug(value: object) -> str:
    return _check(CONNECTION_SLUG, "connection slug", value)


def workspace_id(value: object) -> str:
    return _check(WORKSPACE_ID, "workspace id", value)


def jira_project_key(value: object, *, flavour: str | None = None) -> str:
    """A Jira project key; at most 10 characters on Cloud, 255 on Data Center (or when not yet known)."""
    limit, where = (JIRA_CLOUD_KEY_MAX, "Jira Cloud") if flavour == "cloud" else (JIRA_DATACENTER_KEY_MAX, "Jira")
    return _check(JIRA_PROJECT_KEY, "Jira project key", value, limit, where)


def ascii_number(value: object, kind: str, maximum: int) -> int:
    """A positive numeric identifier: an int, or text of ASCII digits only (no sign, no space, no "²")."""
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise IdentifierError(f"invalid {kind}: {value!r} (must be a positive integer)")
    if isinstance(value, str):
        _check_text(kind, value)
        if len(value) > len(str(maximum)) or not ASCII_DIGITS.fullmatch(value):
            raise IdentifierError(f"invalid {kind}: {value!r} (must be a positive integer of ASCII digits 0-9)")
    number = int(value)
    if not 0 < number <= maximum:
        raise IdentifierError(f"invalid {kind}: {value!r} (out of range 1..{maximum})")
    return number


def jira_board_id(value: object) -> int:
    return ascii_number(value, "Jira board id", JIRA_BOARD_MAX)


def jira_issue_id(value: object) -> int:
    """A Jira issue's numeric id (as Jira sends it, text or number), before it goes into a path."""
    return ascii_number(value, "Jira issue id", 2**63 - 1)


def jira_field_id(value: object) -> str:
    return _check(JIRA_FIELD_ID, "Jira field id", value)


def bigquery_project(value: object) -> str:
    return _check(BQ_PROJECT_ID, "BigQuery project id", value, 30, "BigQuery")


def bigquery_dataset(value: object) -> str:
    return _check(BQ_DATASET_ID, "BigQuery dataset id", value, BQ_DATASET_MAX, "BigQuery")


def bigquery_table(value: object) -> str:
    return _check(BQ_TABLE_ID, "BigQuery table id", value, BQ_TABLE_MAX, "BigQuery")


def bigquery_column(value: object) -> str:
    return _check(BQ_COLUMN_NAME, "BigQuery column name", value, BQ_COLUMN_MAX, "BigQuery")


def postgres_name(value: object, kind: str = "name") -> str:
    """A PostgreSQL schema, table, column or role name (lower-case, as unquoted SQL folds it)."""
    return _check(PG_NAME, f"PostgreSQL {kind}", value, 63, "PostgreSQL")


def postgres_schema(value: object) -> str:
    name = postgres_name(value, "schema name")
    if PG_SYSTEM_SCHEMA.fullmatch(name):
        raise IdentifierError(f"invalid PostgreSQL schema name: {name!r} is a system schema, not customer data")
    return name


def sql_identifier(value: object) -> str:
    """A table or column name of our own or of a configured application table (PostgreSQL/SQLite)."""
    return _check(SQL_IDENTIFIER, "SQL identifier", value)
