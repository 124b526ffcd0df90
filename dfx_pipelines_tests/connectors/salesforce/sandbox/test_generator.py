"""The seeded org generator: determinism, realistic and self-consistent data, and Salesforce ids."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from dfx_pipelines.connectors.salesforce.sandbox.ids import make_id, make_ids, to_18
from dfx_pipelines.connectors.salesforce.sandbox.org import SalesforceOrg
from dfx_pipelines.connectors.salesforce.sandbox.schema import OPPORTUNITY_STAGES, STORED_OBJECTS

from .conftest import FIXED_NOW


def _dump(org: SalesforceOrg) -> dict[str, list[tuple]]:
    return {obj.name: org.run_sql(f'SELECT * FROM "{obj.name}" ORDER BY rowid') for obj in STORED_OBJECTS}


def test_same_seed_same_data_and_another_seed_differs():
    first = _dump(SalesforceOrg(seed=5, opportunities=300, now=FIXED_NOW))
    assert first == _dump(SalesforceOrg(seed=5, opportunities=300, now=FIXED_NOW))
    other = _dump(SalesforceOrg(seed=6, opportunities=300, now=FIXED_NOW))
    assert first["Opportunity"] != other["Opportunity"]


def test_case_safe_id_checksum():
    assert to_18("001i000001AWbWu") == "001i000001AWbWuAAL"
    assert to_18("001i000001AWbWuAAL") == "001i000001AWbWuAAL"
    assert to_18("001i000001awbwu") != to_18("001i000001AWbWu")
    assert to_18("bad id!") is None
    numbers = np.array([0, 1, 61, 62, 12345, 9_999_999])
    assert make_ids("006", numbers) == [make_id("006", int(n)) for n in numbers]


def test_ids_carry_their_object_key_prefix(shared_sandbox):
    prefixes = {
        "Opportunity": "006",
        "Account": "001",
        "Contact": "003",
        "Lead": "00Q",
        "Task": "00T",
        "Event": "00U",
        "Case": "500",
        "Campaign": "701",
        "CampaignMember": "00v",
        "User": "005",
        "Deal_Review__c": "a05",
    }
    for obj, prefix in prefixes.items():
        ids = [row[0] for row in shared_sandbox.org.run_sql(f'SELECT "Id" FROM "{obj}" LIMIT 50')]
        assert ids and all(len(i) == 18 and i.startswith(prefix) and to_18(i[:15]) == i for i in ids), obj


def test_opportunity_stage_flags_and_probabilities_are_consistent(shared_sandbox):
    table = {stage: (probability, closed, won) for stage, probability, _, closed, won in OPPORTUNITY_STAGES}
    rows = shared_sandbox.org.run_sql(
        'SELECT "StageName", "Probability", "IsClosed", "IsWon", "CloseDate", "CreatedDate", "Amount", "ExpectedRevenue" FROM "Opportunity"'
    )
    assert {row[0] for row in rows} == set(table)  # every stage occurs
    for stage, probability, closed, won, close_date, created, amount, expected in rows:
        assert (probability, bool(closed), bool(won)) == table[stage]
        assert date.fromisoformat(close_date) >= date.fromtimestamp(created) - timedelta(days=1)
        if amount is not None:
            assert expected == pytest.approx(amount * probability / 100)
    assert any(row[6] is None for row in rows) and any(row[6] is not None for row in rows)


def test_timestamps_are_within_two_years_before_now(shared_sandbox):
    earliest = int((FIXED_NOW - timedelta(days=731)).timestamp())
    latest = int(FIXED_NOW.timestamp())
    for obj in STORED_OBJECTS:
        names = [f.name for f in obj.fields if f.name in ("CreatedDate", "LastModifiedDate", "SystemModstamp")]
        for name in names:
            low, high = shared_sandbox.org.run_sql(f'SELECT MIN("{name}"), MAX("{name}") FROM "{obj.name}"')[0]
            assert earliest <= low <= high <= latest, (obj.name, name)
        if "LastModifiedDate" in names:
            bad = shared_sandbox.org.run_sql(
                f'SELECT COUNT(*) FROM "{obj.name}" WHERE "LastModifiedDate" < "CreatedDate" OR "SystemModstamp" < "LastModifiedDate"'
            )[0][0]
            assert bad == 0, obj.name


def test_converted_leads_point_at_real_records(shared_sandbox):
    org = shared_sandbox.org
    converted = org.run_sql(
        'SELECT l."ConvertedOpportunityId", o."Id", l."ConvertedAccountId", o."AccountId", l."Status" FROM "Lead" l '
        'LEFT JOIN "Opportunity" o ON o."Id" = l."ConvertedOpportunityId" WHERE l."IsConverted" = 1'
    )
    assert converted
    for opportunity_ref, opportunity_id, account_ref, account_id, status in converted:
        assert opportunity_ref == opportunity_id and account_ref == account_id and status == "Closed - Converted"
    assert org.run_sql('SELECT COUNT(*) FROM "Lead" WHERE "IsConverted" = 0 AND "ConvertedDate" IS NOT NULL')[0][0] == 0


def test_cases_milestones_and_campaign_members_are_consistent(shared_sandbox):
    org = shared_sandbox.org
    assert (
        org.run_sql(
            'SELECT COUNT(*) FROM "Case" WHERE ("Status" = \'Closed\') != "IsClosed" OR ("ClosedDate" IS NULL) = "IsClosed"'
        )[0][0]
        == 0
    )
    assert (
        org.run_sql('SELECT COUNT(*) FROM "CaseMilestone" WHERE ("CompletionDate" IS NOT NULL) != "IsCompleted"')[0][0]
        == 0
    )
    assert (
        org.run_sql('SELECT COUNT(*) FROM "CampaignMember" WHERE ("Status" = \'Responded\') != "HasResponded"')[0][0]
        == 0
    )
    assert org.run_sql('SELECT COUNT(DISTINCT "IsViolated") FROM "CaseMilestone"')[0][0] == 2


def test_mutate_is_deterministic(make_sandbox):
    first = make_sandbox(seed=9).org.mutate(25, seed=4)
    second = make_sandbox(seed=9).org.mutate(25, seed=4)
    assert first == second and first.total == 25
