"""SOQL parser and compiler details that need no server: escapes, literals, identifiers never spliced."""

from __future__ import annotations

from datetime import date

import pytest

from dfx_pipelines.connectors.salesforce.sandbox.errors import SalesforceApiError
from dfx_pipelines.connectors.salesforce.sandbox.soql import execute
from dfx_pipelines.connectors.salesforce.sandbox.soql_dates import date_range
from dfx_pipelines.connectors.salesforce.sandbox.soql_lexer import tokenize


def test_string_escapes():
    [token, _] = tokenize(r"'it\'s a \\ back\nslash \%'")
    assert token.value == "it's a \\ back\nslash %"
    assert token.like_pattern == "it's a \\\\ back\nslash \\%"


def test_date_literal_ranges():
    today = date(2025, 6, 15)  # Sunday
    assert date_range("THIS_WEEK", None, today) == (date(2025, 6, 15), date(2025, 6, 22))
    assert date_range("LAST_N_DAYS", 7, today) == (date(2025, 6, 8), date(2025, 6, 16))
    assert date_range("NEXT_N_DAYS", 7, today) == (date(2025, 6, 16), date(2025, 6, 23))
    assert date_range("LAST_QUARTER", None, today) == (date(2025, 1, 1), date(2025, 4, 1))
    assert date_range("LAST_MONTH", None, date(2025, 1, 10)) == (date(2024, 12, 1), date(2025, 1, 1))


def test_values_are_parameters_not_sql(shared_sandbox):
    hostile = "x' OR 1=1 --"
    result = execute(shared_sandbox.org, "SELECT Id FROM Account WHERE Name = 'x\\' OR 1=1 --'")
    assert result.total_size == 0
    assert hostile not in result.plan.sql  # the value travelled as a parameter
    assert hostile in result.plan.params


@pytest.mark.parametrize(
    "soql",
    [
        'SELECT Id FROM Account WHERE Name = "double"',
        "SELECT Id FROM Account; DROP TABLE Account",
        'SELECT "Id" FROM Account',
        "SELECT Id FROM Account WHERE Name IN (SELECT Name FROM Contact)",
        "SELECT Id FROM Account LIMIT",
        "SELECT FROM Account",
        "",
    ],
)
def test_garbage_is_malformed_not_a_crash(shared_sandbox, soql):
    with pytest.raises(SalesforceApiError) as raised:
        execute(shared_sandbox.org, soql)
    assert raised.value.error_code == "MALFORMED_QUERY"
    assert shared_sandbox.org.count("Account") > 0


def test_case_insensitive_names_answer_canonical_spelling(shared_sandbox):
    [record] = execute(
        shared_sandbox.org, "select id, account.name from opportunity where accountid != null limit 1"
    ).all_records()
    assert set(record) == {"attributes", "Id", "Account"} and "Name" in record["Account"]
