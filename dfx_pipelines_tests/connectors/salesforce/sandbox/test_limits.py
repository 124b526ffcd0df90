"""API usage: Sforce-Limit-Info on every REST answer, /limits, and REQUEST_LIMIT_EXCEEDED."""

from __future__ import annotations

import pytest
from simple_salesforce.exceptions import SalesforceRefusedRequest

from .conftest import client


def test_api_usage_header_is_parsed_by_simple_salesforce(make_sandbox):
    sandbox = make_sandbox(daily_api_limit=500)
    sf = client(sandbox, sandbox.app.issue_tokens()["access_token"])
    sf.query("SELECT Id FROM Account LIMIT 1")
    sf.query("SELECT Id FROM Account LIMIT 1")
    usage = sf.api_usage["api-usage"]
    assert (usage.used, usage.total) == (2, 500)
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 500, "Remaining": 497}
    assert sandbox.app.api_calls == 3


def test_request_limit_exceeded(make_sandbox):
    sandbox = make_sandbox(daily_api_limit=3)
    sf = client(sandbox, sandbox.app.issue_tokens()["access_token"])
    for _ in range(3):
        sf.limits()
    with pytest.raises(SalesforceRefusedRequest) as raised:
        sf.limits()
    assert raised.value.status == 403
    assert raised.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"


def test_error_answers_carry_the_limit_header(shared_sandbox):
    response = shared_sandbox.session().get(f"{shared_sandbox.url}/services/data/v59.0/limits")
    assert response.status_code == 401
    assert response.headers["Sforce-Limit-Info"].startswith("api-usage=")


def test_rate_limit_fault_is_a_retryable_429(sandbox, sf):
    sandbox.server.faults.inject("rate_limit", retry_after=2)
    from simple_salesforce.exceptions import SalesforceGeneralError

    with pytest.raises(SalesforceGeneralError) as raised:
        sf.limits()
    assert raised.value.status == 429
    assert raised.value.content[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
