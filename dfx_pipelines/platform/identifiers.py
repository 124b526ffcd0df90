"""Strict patterns for every identifier that reaches SOQL, SQL or JQL, checked once at the edge.

Identifiers are never escaped into a query: they either match the pattern for their kind and are used
as they are, or they are refused with an `IdentifierError` that names the kind and the bad value.
Values (as opposed to identifiers) go through each query language's own quoting instead.
"""

from __future__ import annotations

import re

from dfx_pipelines.platform.errors import IdentifierError

# Salesforce API names: letters, digits and single underscores, starting with a letter; custom ones end in
# __c (objects, fields), __r (relationships), __mdt, __e, __x, __b; an optional namespace prefix `ns__`.
_SF_NAME = r"[A-Za-z](?:[A-Za-z0-9]|_(?!_))*"
_SF_SUFFIX = r"(?:__(?:c|r|mdt|e|x|b|kav|ChangeEvent|Share|History|Feed))?"
SF_API_NAME = re.compile(rf"^(?:{_SF_NAME}__)?{_SF_NAME}{_SF_SUFFIX}$")
# Connection slug: also a Dagster dynamic partition key, so never `|` (multi-partition separator) or `,`.
CONNECTION_SLUG = re.compile(r"^[a-z][a-z0-9-]{1,62}[a-z0-9]$")
WORKSPACE_ID = CONNECTION_SLUG
JIRA_PROJECT_KEY = re.compile(r"^[A-Z][A-Z0-9_]{0,254}$")
JIRA_FIELD_ID = re.compile(r"^(?:[a-z][A-Za-z0-9]{0,63}|customfield_[0-9]{1,10})$")
BQ_PROJECT_ID = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
BQ_DATASET_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
BQ_TABLE_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,1023}$")
BQ_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
SQL_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _check(pattern: re.Pattern[str], kind: str, value: object) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise IdentifierError(f"invalid {kind}: {value!r} (must match {pattern.pattern})")
    return value


def salesforce_name(value: object) -> str:
    """A Salesforce object or field API name (`Opportunity`, `Amount`, `Deal_Review__c`)."""
    return _check(SF_API_NAME, "Salesforce API name", value)


def salesforce_field_path(value: object) -> str:
    """A field reference, optionally through relationships (`Account.Name`, `Owner__r.Region__c`)."""
    if not isinstance(value, str) or not value or len(value.split(".")) > 5:
        raise IdentifierError(f"invalid Salesforce field path: {value!r}")
    for part in value.split("."):
        if not SF_API_NAME.fullmatch(part):
            raise IdentifierError(f"invalid Salesforce field path: {value!r} (bad part {part!r})")
    return value


def connection_slug(value: object) -> str:
    return _check(CONNECTION_SLUG, "connection slug", value)


def workspace_id(value: object) -> str:
    return _check(WORKSPACE_ID, "workspace id", value)


def jira_project_key(value: object) -> str:
    return _check(JIRA_PROJECT_KEY, "Jira project key", value)


def jira_board_id(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).isdigit():
        raise IdentifierError(f"invalid Jira board id: {value!r} (must be a positive integer)")
    number = int(value)
    if not 0 < number < 2**31:
        raise IdentifierError(f"invalid Jira board id: {value!r} (out of range)")
    return number


def jira_field_id(value: object) -> str:
    return _check(JIRA_FIELD_ID, "Jira field id", value)


def bigquery_project(value: object) -> str:
    return _check(BQ_PROJECT_ID, "BigQuery project id", value)


def bigquery_dataset(value: object) -> str:
    return _check(BQ_DATASET_ID, "BigQuery dataset id", value)


def bigquery_table(value: object) -> str:
    return _check(BQ_TABLE_ID, "BigQuery table id", value)


def bigquery_column(value: object) -> str:
    return _check(BQ_COLUMN_NAME, "BigQuery column name", value)


def sql_identifier(value: object) -> str:
    """A table or column name of our own or of a configured application table (PostgreSQL/SQLite)."""
    return _check(SQL_IDENTIFIER, "SQL identifier", value)
