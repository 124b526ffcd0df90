"""The gate's pure rules: billing arithmetic, caps, the monthly budget, fingerprints and approvals.
No sandbox, no database: every number here is computed by hand from the documented rules."""

import itertools
import math
import random
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from dfx_pipelines.connectors.bigquery import gate
from dfx_pipelines.connectors.bigquery.gate import ApprovalInvalid, ApprovalState, ApprovalStatus

MIB, TIB = 2**20, 2**40
NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------- bytes and money


@pytest.mark.parametrize(
    ("processed", "tables", "expected"),
    [
        (0, 1, 0),  # nothing read, nothing billed
        (0, 3, 0),
        (1, 1, 10 * MIB),  # the 10 MiB minimum
        (10 * MIB, 1, 10 * MIB),
        (10 * MIB + 1, 1, 11 * MIB),  # rounded up to the next MiB
        (123 * MIB - 7, 1, 123 * MIB),
        (123 * MIB, 1, 123 * MIB),
        (5, 2, 20 * MIB),  # two tables: each at least 10 MiB
        (25 * MIB + 1, 3, 46 * MIB),  # ceil(25 MiB + 1) + 2 × 10 MiB
    ],
)
def test_projected_billed_bytes_follows_the_billing_rule(processed: int, tables: int, expected: int) -> None:
    assert gate.projected_billed_bytes(processed, tables) == expected


def test_projection_is_an_upper_bound_of_the_real_bill_for_any_split() -> None:
    # The dry run gives only a total: whatever the per-table split, the real bill never exceeds the projection.
    rng = random.Random(5)
    for _ in range(2000):
        tables = rng.randint(1, 4)
        split = [rng.choice([0, rng.randint(1, 3 * MIB), rng.randint(1, 40 * MIB)]) for _ in range(tables)]
        real = sum(0 if b == 0 else max(10 * MIB, math.ceil(b / MIB) * MIB) for b in split)
        assert gate.projected_billed_bytes(sum(split), tables) >= real
    # And for one table it is exact.
    for processed in itertools.chain(range(0, 3 * MIB, 99_991), [10 * MIB - 1, 10 * MIB, 10 * MIB + 1, 77 * MIB + 3]):
        assert gate.projected_billed_bytes(processed, 1) == (
            0 if processed == 0 else max(10 * MIB, math.ceil(processed / MIB) * MIB)
        )


def test_negative_inputs_are_errors() -> None:
    with pytest.raises(ValueError):
        gate.projected_billed_bytes(-1, 1)
    with pytest.raises(ValueError):
        gate.ceil_to_mib(-5)
    with pytest.raises(ValueError):
        gate.cost_usd(-1, 6.25)
    with pytest.raises(ValueError):
        gate.cost_usd(1, 0)
    with pytest.raises(ValueError):
        gate.maximum_bytes_billed(10, margin=1.5)


def test_cost_is_bytes_over_a_tib_times_the_price() -> None:
    assert gate.cost_usd(TIB, 6.25) == 6.25
    assert gate.cost_usd(10 * MIB, 6.25) == pytest.approx(10 / 2**20 * 6.25)
    assert gate.cost_usd(10 * MIB, 6.25) == pytest.approx(0.0000596046447753906)
    assert gate.cost_usd(3 * TIB, 7.5) == 22.5  # another region's price
    assert gate.cost_usd(0, 6.25) == 0


@pytest.mark.parametrize(
    ("projected", "margin", "cap"),
    [
        (0, 0.1, 10 * MIB),  # a query that bills nothing still gets a real (non-zero) cap
        (10 * MIB, 0.1, 11 * MIB),  # 11 MiB exactly
        (10 * MIB, 0.0, 10 * MIB),
        (100 * MIB, 0.1, 110 * MIB),
        (100 * MIB, 0.25, 125 * MIB),
        (33 * MIB, 0.1, 37 * MIB),  # 36.3 MiB → rounded up to whole MiB
    ],
)
def test_cap_is_the_rounded_projection_plus_margin_in_whole_mib(projected: int, margin: float, cap: int) -> None:
    assert gate.maximum_bytes_billed(projected, margin) == cap
    assert cap % MIB == 0 and cap >= projected


def test_project_and_total() -> None:
    one = gate.project(93, 1, 6.25)
    assert (one.bytes_processed, one.billed_bytes, one.cap_bytes) == (93, 10 * MIB, 11 * MIB)
    assert one.cost_usd == pytest.approx(10 * MIB / TIB * 6.25)
    two = gate.project(15 * MIB + 5, 1, 6.25)
    both = gate.total([one, two])
    assert both.bytes_processed == 93 + 15 * MIB + 5
    assert both.billed_bytes == 10 * MIB + 16 * MIB
    assert both.cap_bytes == 11 * MIB + gate.maximum_bytes_billed(16 * MIB)
    assert both.cost_usd == pytest.approx(26 * MIB / TIB * 6.25)
    assert gate.total([]) == gate.Projection(0, 0, 0.0, 0, 0)


# ---------------------------------------------------------------- budget


def test_within_budget_includes_the_boundary() -> None:
    price = 6.25
    projection = gate.project(TIB // 2, 1, price)  # USD 3.125
    mtd = TIB  # USD 6.25 already spent
    assert gate.decide(mtd, projection, 9.375, price).allowed  # exactly at the budget
    over = gate.decide(mtd, projection, 9.37, price)
    assert not over.allowed and "exceeds the monthly budget" in over.reason
    assert (
        over.month_to_date_usd == 6.25
        and over.projected_usd == pytest.approx(3.125)
        and over.after_usd == pytest.approx(9.375)
    )


@pytest.mark.parametrize("budget", [None, 0, -1.0])
def test_no_budget_allows_nothing(budget: float | None) -> None:
    decision = gate.decide(0, gate.project(0, 1, 6.25), budget, 6.25)
    assert not decision.allowed and "no monthly budget" in decision.reason


def test_warning_at_eighty_percent() -> None:
    assert not gate.warns(7.99, 10.0)
    assert gate.warns(8.0, 10.0)
    assert gate.warns(12.0, 10.0)
    assert gate.warns(0.0, None)  # no budget at all is worth a warning too
    assert gate.budget_share(2.5, 10.0) == 0.25 and gate.budget_share(1, None) is None


def test_month_is_the_utc_calendar_month() -> None:
    assert gate.month_of(datetime(2026, 1, 31, 23, 30, tzinfo=UTC)) == "2026-01"
    # 00:30 on 1 Feb in UTC+02:00 is still January in UTC.
    assert gate.month_of(datetime(2026, 2, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))) == "2026-01"
    assert gate.month_of(date(2026, 12, 1)) == "2026-12"
    with pytest.raises(ValueError):
        gate.month_of(datetime(2026, 1, 1))


def test_usd_formatting_keeps_small_costs_readable() -> None:
    assert gate.usd(0.0000596) == "USD 0.00006"
    assert gate.usd(50) == "USD 50"
    assert gate.usd(1234.5) == "USD 1,234.5"
    assert gate.usd(None) == "no budget"


# ---------------------------------------------------------------- fingerprints


SQL = "SELECT `status`, SUM(`amount`) AS v FROM `p-roject.shop.orders` WHERE `order_date` BETWEEN @a AND @b GROUP BY `status`"


def test_fingerprint_ignores_layout_comments_and_keyword_case() -> None:
    base = gate.fingerprint(SQL, {"a": date(2024, 6, 1), "b": date(2024, 6, 1)})
    relaid = "select `status`,\n   sum(`amount`) as v -- revenue\nFROM `p-roject.shop.orders`\n where `order_date` between @a and @b group by `status`"
    assert gate.fingerprint(relaid, {"b": date(2024, 6, 1), "a": date(2024, 6, 1)}) == base
    assert len(base) == 64 and int(base, 16) >= 0


def test_fingerprint_changes_with_the_query_or_its_parameters() -> None:
    params = {"a": date(2024, 6, 1), "b": date(2024, 6, 1)}
    base = gate.fingerprint(SQL, params)
    assert gate.fingerprint(SQL.replace("SUM", "AVG"), params) != base
    assert gate.fingerprint(SQL, {**params, "b": date(2024, 6, 2)}) != base
    assert gate.fingerprint(SQL, {**params, "b": "2024-06-01"}) != base  # a string is not a DATE
    assert gate.fingerprint(SQL, {**params, "c": 1}) != base
    assert gate.fingerprint(SQL, {"a": 1}) != gate.fingerprint(SQL, {"a": True})


def test_batch_fingerprint_is_ordered_and_single_is_itself() -> None:
    assert gate.batch_fingerprint(["abc"]) == "abc"
    assert gate.batch_fingerprint(["a", "b"]) != gate.batch_fingerprint(["b", "a"])
    assert gate.batch_fingerprint(["a", "b"]) != gate.batch_fingerprint(["a"])


# ---------------------------------------------------------------- approvals


def approval(status: ApprovalStatus = ApprovalStatus.APPROVED, **changes) -> ApprovalState:
    values = {
        "id": "bqa-1",
        "connection_id": "bq-acme",
        "fingerprint": "f" * 64,
        "status": status,
        "expires_at": NOW + timedelta(days=1),
        "cap_bytes": 11 * MIB,
    }
    return ApprovalState(**{**values, **changes})


def use(state: ApprovalState, **changes) -> None:
    args = {"connection_id": "bq-acme", "fingerprint": "f" * 64, "projected_billed": 10 * MIB, "now": NOW, **changes}
    gate.check_usable(state, **args)


def test_an_approved_unexpired_approval_for_this_query_is_usable() -> None:
    use(approval())
    use(approval(), projected_billed=11 * MIB)  # up to the approved cap


@pytest.mark.parametrize(
    ("state", "changes", "message"),
    [
        (approval(ApprovalStatus.USED), {}, "single-use"),
        (approval(ApprovalStatus.PENDING), {}, "is pending"),
        (approval(ApprovalStatus.REJECTED), {}, "is rejected"),
        (approval(ApprovalStatus.EXPIRED), {}, "expired"),
        (approval(expires_at=NOW), {}, "expired"),  # expiry is exclusive
        (approval(expires_at=NOW - timedelta(seconds=1)), {}, "expired"),
        (approval(), {"fingerprint": "e" * 64}, "changed query needs a new approval"),
        (approval(), {"connection_id": "bq-other"}, "belongs to connection bq-acme"),
        (approval(), {"projected_billed": 11 * MIB + 1}, "needs a new approval"),
    ],
)
def test_approval_rules(state: ApprovalState, changes: dict, message: str) -> None:
    with pytest.raises(ApprovalInvalid, match=message):
        use(state, **changes)


def test_pending_and_approved_lapse_decided_ones_do_not() -> None:
    later = NOW + timedelta(days=2)
    assert gate.effective_status(approval(ApprovalStatus.PENDING), later) is ApprovalStatus.EXPIRED
    assert gate.effective_status(approval(ApprovalStatus.APPROVED), later) is ApprovalStatus.EXPIRED
    for final in (ApprovalStatus.USED, ApprovalStatus.REJECTED):
        assert gate.effective_status(approval(final), later) is final
    assert gate.effective_status(approval(ApprovalStatus.PENDING), NOW) is ApprovalStatus.PENDING


def test_only_pending_approvals_can_be_decided() -> None:
    gate.check_decidable(approval(ApprovalStatus.PENDING), NOW)
    for status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED, ApprovalStatus.USED):
        with pytest.raises(ApprovalInvalid, match="only a pending approval"):
            gate.check_decidable(approval(status), NOW)
    with pytest.raises(ApprovalInvalid, match="expired"):
        gate.check_decidable(approval(ApprovalStatus.PENDING), NOW + timedelta(days=3))
