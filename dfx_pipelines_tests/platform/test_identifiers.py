"""Hostile identifiers of every kind: never trimmed or repaired, vendors' length limits with the limit in
the message, ASCII digits only for numeric ids. Each kind gets the same table of hostile forms."""

from __future__ import annotations

import pytest

from dfx_pipelines.platform import identifiers
from dfx_pipelines.platform.errors import ConfigError, IdentifierError
from dfx_pipelines.platform.registry import parse_connection

# (check, a valid value of that kind)
TEXT_KINDS = {
    "salesforce_name": (identifiers.salesforce_name, "Opportunity"),
    "salesforce_field_path": (identifiers.salesforce_field_path, "Account.Name"),
    "connection_slug": (identifiers.connection_slug, "sf-acme"),
    "workspace_id": (identifiers.workspace_id, "acme"),
    "jira_project_key": (identifiers.jira_project_key, "ABC"),
    "jira_field_id": (identifiers.jira_field_id, "customfield_10016"),
    "bigquery_project": (identifiers.bigquery_project, "acme-warehouse"),
    "bigquery_dataset": (identifiers.bigquery_dataset, "shop"),
    "bigquery_table": (identifiers.bigquery_table, "orders"),
    "bigquery_column": (identifiers.bigquery_column, "amount"),
    "sql_identifier": (identifiers.sql_identifier, "story_points"),
}

# Ways to disguise a valid value: each must be refused, never turned back into the valid value.
DISGUISES = {
    "trailing newline": lambda v: v + "\n",
    "leading newline": lambda v: "\n" + v,
    "trailing CRLF": lambda v: v + "\r\n",
    "trailing space": lambda v: v + " ",
    "leading space": lambda v: " " + v,
    "trailing tab": lambda v: v + "\t",
    "trailing no-break space": lambda v: v + "\u00a0",
    "leading ideographic space": lambda v: "\u3000" + v,
    "trailing NUL": lambda v: v + "\x00",
    "inner NUL": lambda v: v[:1] + "\x00" + v[1:],
    "inner zero-width space": lambda v: v[:1] + "\u200b" + v[1:],
    "inner right-to-left override": lambda v: v[:1] + "\u202e" + v[1:],
    "trailing line separator": lambda v: v + "\u2028",
    "trailing byte-order mark": lambda v: v + "\ufeff",
    "trailing vertical tab": lambda v: v + "\x0b",
    "fullwidth first letter": lambda v: (
        chr(ord(v[0]) + 0xFEE0) + v[1:] if v[0].isascii() and v[0].isalpha() else "\uff21" + v
    ),
}


@pytest.mark.parametrize("kind", sorted(TEXT_KINDS))
@pytest.mark.parametrize("disguise", sorted(DISGUISES))
def test_disguised_identifiers_are_refused_not_repaired(kind: str, disguise: str) -> None:
    check, valid = TEXT_KINDS[kind]
    assert check(valid) == valid
    with pytest.raises(IdentifierError, match="invalid"):
        check(DISGUISES[disguise](valid))


@pytest.mark.parametrize(
    "value, message",
    [
        ("Opportunity\n", "surrounding whitespace"),
        ("StageName\u00a0", "surrounding whitespace"),
        ("Stage\u200bName", r"U\+200B"),
    ],
)
def test_the_message_names_the_problem(value: str, message: str) -> None:
    with pytest.raises(IdentifierError, match=message):
        identifiers.salesforce_name(value)


def test_the_registry_refuses_rather_than_trims_a_selection() -> None:
    """The issue's examples: `Opportunity\\n`, `StageName\\u00a0`, `ABC\\n` were accepted as the trimmed name."""
    base = {"id": "sf-acme", "workspace_id": "acme", "kind": "salesforce", "display_name": "Acme"}
    for selection in (
        {"Opportunity\n": ["StageName"]},
        {"Opportunity": ["StageName\u00a0"]},
        {"Opportunity": [" Amount"]},
    ):
        with pytest.raises((IdentifierError, ConfigError)):
            parse_connection({**base, "selection": {"objects": selection}})
    jira = {"id": "jira-acme", "workspace_id": "acme", "kind": "jira", "display_name": "J"}
    for projects in (["ABC\n"], [" ABC"], ["ABC\t"]):
        with pytest.raises((IdentifierError, ConfigError)):
            parse_connection({**jira, "selection": {"projects": projects}})
    with pytest.raises((IdentifierError, ConfigError)):
        parse_connection({**jira, "field_mapper": [{"target": "story_points ", "source": "customfield_10016"}]})
    bigquery = {"id": "bq-acme", "workspace_id": "acme", "kind": "bigquery", "display_name": "B"}
    for datasets in ({"shop\n": ["orders"]}, {"shop": ["orders "]}):
        with pytest.raises((IdentifierError, ConfigError)):
            parse_connection({**bigquery, "selection": {"datasets": datasets}})
    with pytest.raises(ConfigError, match="control character"):
        parse_connection({**base, "display_name": "Acme\r\nBcc: attacker@evil.example"})


# ------------------------------------------------------------------------------ length limits


@pytest.mark.parametrize(
    "check, longest_valid, too_long, limit",
    [
        (identifiers.salesforce_name, "A" * 40, "A" * 41, "40"),
        (identifiers.salesforce_name, "A" * 40 + "__c", "A" * 41 + "__c", "40"),
        (identifiers.salesforce_name, "n" * 15 + "__" + "A" * 40 + "__c", "n" * 16 + "__Field__c", "15"),
        (identifiers.salesforce_field_path, "Owner__r." + "A" * 40 + "__c", "Owner__r." + "A" * 41 + "__c", "40"),
        (lambda v: identifiers.jira_project_key(v, flavour="cloud"), "A" * 10, "A" * 11, "10"),
        (identifiers.jira_project_key, "A" * 255, "A" * 256, "255"),
        (identifiers.bigquery_dataset, "d" * 1024, "d" * 1025, "1024"),
        (identifiers.bigquery_table, "t" * 1024, "t" * 1025, "1024"),
        (identifiers.bigquery_column, "c" * 300, "c" * 301, "300"),
        (identifiers.bigquery_project, "p" * 30, "p" * 31, "30"),
    ],
)
def test_vendor_length_limits_are_enforced_with_the_limit_named(
    check, longest_valid: str, too_long: str, limit: str
) -> None:
    assert check(longest_valid) == longest_valid
    with pytest.raises(IdentifierError, match=limit):
        check(too_long)


def test_standard_derived_salesforce_names_are_measured_without_their_suffix() -> None:
    assert identifiers.salesforce_name("ServiceAppointmentCapacityUsageChangeEvent")  # 42 characters, a real object
    assert identifiers.salesforce_name("OpportunityFieldHistory")


def test_a_jira_cloud_connection_applies_the_cloud_key_limit() -> None:
    jira = {
        "id": "jira-acme",
        "workspace_id": "acme",
        "kind": "jira",
        "display_name": "J",
        "selection": {"projects": ["ABCDEFGHIJK"]},
    }
    assert parse_connection({**jira, "endpoint": {"flavour": "datacenter"}}).selection.projects == ["ABCDEFGHIJK"]
    with pytest.raises(IdentifierError, match=r"at most|longer than the 10"):
        parse_connection({**jira, "endpoint": {"flavour": "cloud"}})


# ------------------------------------------------------------------------------ numeric ids


@pytest.mark.parametrize(
    "value",
    [
        "²",
        "1²",
        "١٢",
        "٣",
        "१२",
        "１２",
        "𝟏",
        "12\n",
        " 12",
        "+12",
        "-1",
        "0",
        "1_000",
        "0x1f",
        "1e3",
        "12.0",
        "",
        "2147483648",
        "9" * 40,
        True,
        1.0,
        None,
    ],
)
def test_numeric_ids_take_ascii_digits_only(value: object) -> None:
    with pytest.raises(IdentifierError, match="Jira board id"):
        identifiers.jira_board_id(value)


def test_numeric_ids_accept_ascii_digits_and_ints() -> None:
    assert identifiers.jira_board_id("12") == 12 and identifiers.jira_board_id(2**31 - 1) == 2**31 - 1
    assert identifiers.jira_issue_id("10001") == 10001
    with pytest.raises(IdentifierError, match="Jira issue id"):
        identifiers.jira_issue_id("1²")
