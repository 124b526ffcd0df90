"""The BigQuery budget gate's rules, as pure functions: what a query will cost, whether the month's
budget allows it, the `maximum_bytes_billed` cap it runs under, its fingerprint, and whether an
approval lets it run. No Dagster, no client, no database: `resource.py` does the I/O around these.

Billing rule (on-demand, documented): per referenced table, bytes processed rounded up to the MiB with
a 10 MiB minimum; nothing read, nothing billed. A dry run reports only the total bytes processed and
the list of referenced tables, not a per-table split, so the projection is an upper bound that holds
for any split: `max(10 MiB, ceil_MiB(total)) + (tables - 1) × 10 MiB`. For one table (every metric
query) that is exactly BigQuery's bill. A budget is only useful if it is never under-estimated.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any

import sqlglot
from sqlglot.errors import SqlglotError

from dfx_pipelines.platform.errors import ConnectorError

MIB = 1 << 20
TIB = 1 << 40
MIN_BILLED_PER_TABLE = 10 * MIB
DEFAULT_PRICE_PER_TIB_USD = 6.25
DEFAULT_CAP_MARGIN = 0.10  # head-room for rows that arrive between the dry run and the run
WARNING_SHARE = 0.80  # the asset check warns once month-to-date spend reaches this share of the budget


# ---------------------------------------------------------------- errors (safe to show: no data, no key)


class GateError(ConnectorError):
    """The gate refused a query; nothing was executed (dry runs excepted)."""

    permanent = True  # the same query is refused the same way until a person changes something


class QueryRefused(GateError):
    """Not a single SELECT, a table outside the selection, a tagged or unselected column, a bad identifier."""


class BudgetNotConfigured(GateError):
    """The connection has no monthly budget: no query may run (refused before any request)."""


class DryRunFailed(GateError):
    """BigQuery rejected the dry run (syntax, unknown table or column, permissions): nothing ran."""


class ApprovalInvalid(GateError):
    """An approval was named but cannot be used: unknown, not approved, used, expired or for another query."""

    exit_code = 2  # the id a person typed names no approval they can act on


class ReservationLapsed(GateError):
    """A run's budget reservation lapsed (its lease was not renewed) and was released: nothing more is sent."""


class CapExceeded(GateError):
    """BigQuery refused to bill more than `maximum_bytes_billed`: the job failed unbilled; not retried."""


# ---------------------------------------------------------------- bytes and money


def ceil_to_mib(n: int) -> int:
    if n < 0:
        raise ValueError(f"bytes must not be negative, got {n}")
    return -(-n // MIB) * MIB


def projected_billed_bytes(bytes_processed: int, tables: int) -> int:
    """The most BigQuery can bill for a query processing `bytes_processed` over `tables` tables."""
    if bytes_processed < 0 or tables < 0:
        raise ValueError("bytes processed and table count must not be negative")
    if bytes_processed == 0:
        return 0  # COUNT(*) alone, or every partition pruned: BigQuery bills nothing
    return max(MIN_BILLED_PER_TABLE, ceil_to_mib(bytes_processed)) + (max(tables, 1) - 1) * MIN_BILLED_PER_TABLE


def cost_usd(billed_bytes: int, price_per_tib_usd: float) -> float:
    if billed_bytes < 0 or price_per_tib_usd <= 0:
        raise ValueError("billed bytes must not be negative and the price must be positive")
    return billed_bytes / TIB * price_per_tib_usd


def maximum_bytes_billed(projected_billed: int, margin: float = DEFAULT_CAP_MARGIN) -> int:
    """The cap a job runs under: the rounded projection plus a margin, in whole MiB, at least 10 MiB
    (so a query that bills nothing can run, and a zero cap never reaches BigQuery)."""
    if projected_billed < 0 or not 0 <= margin <= 1:
        raise ValueError("projected bytes must not be negative and the margin must be within [0, 1]")
    # Exact decimal arithmetic: 100 MiB × 1.1 in floats is a hair over 110 MiB and would round to 111.
    with_margin = math.ceil(projected_billed * (1 + Fraction(repr(margin))))
    return max(MIN_BILLED_PER_TABLE, ceil_to_mib(with_margin))


@dataclass(frozen=True)
class Projection:
    """What one query (or a whole batch, summed) is expected to process, bill and cost."""

    bytes_processed: int
    billed_bytes: int
    cost_usd: float
    cap_bytes: int  # maximum_bytes_billed for the job (for a batch: the sum of the jobs' caps)
    tables: int = 1

    def __add__(self, other: Projection) -> Projection:
        return Projection(
            self.bytes_processed + other.bytes_processed,
            self.billed_bytes + other.billed_bytes,
            self.cost_usd + other.cost_usd,
            self.cap_bytes + other.cap_bytes,
            self.tables + other.tables,
        )


def project(
    bytes_processed: int, tables: int, price_per_tib_usd: float, margin: float = DEFAULT_CAP_MARGIN
) -> Projection:
    billed = projected_billed_bytes(bytes_processed, tables)
    return Projection(
        bytes_processed, billed, cost_usd(billed, price_per_tib_usd), maximum_bytes_billed(billed, margin), tables
    )


def total(projections: Iterable[Projection]) -> Projection:
    result = Projection(0, 0, 0.0, 0, 0)
    for projection in projections:
        result = result + projection
    return result


# ---------------------------------------------------------------- the monthly budget


def month_of(moment: datetime | date) -> str:
    """The ledger's calendar month, `YYYY-MM`, in UTC (BigQuery bills per calendar month)."""
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError("a naive datetime has no month: pass an aware (UTC) one")
        moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}"


def usd(value: float | None) -> str:
    """Money as a person reads it: small query costs keep their significant digits."""
    if value is None:
        return "no budget"
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return f"USD {text if text not in ('', '-0') else '0'}"


@dataclass(frozen=True)
class BudgetDecision:
    allowed: bool
    budget_usd: float | None
    month_to_date_usd: float
    projected_usd: float
    reason: str

    @property
    def after_usd(self) -> float:
        return self.month_to_date_usd + self.projected_usd


def decide(
    month_to_date_bytes: int, projection: Projection, budget_usd: float | None, price_per_tib_usd: float
) -> BudgetDecision:
    """Within budget when month-to-date spend plus this projection stays at or under the budget.
    No budget (None) or a non-positive one allows nothing: the connector's default is to run nothing."""
    spent = cost_usd(month_to_date_bytes, price_per_tib_usd)
    if budget_usd is None or budget_usd <= 0:
        return BudgetDecision(
            False, budget_usd, spent, projection.cost_usd, "no monthly budget is configured: no query may run"
        )
    after = spent + projection.cost_usd
    if after <= budget_usd:
        return BudgetDecision(
            True, budget_usd, spent, projection.cost_usd, f"{usd(after)} of {usd(budget_usd)} after this query"
        )
    return BudgetDecision(
        False,
        budget_usd,
        spent,
        projection.cost_usd,
        f"{usd(spent)} spent or reserved this month + {usd(projection.cost_usd)} projected exceeds the monthly budget of {usd(budget_usd)}",
    )


def budget_share(month_to_date_usd: float, budget_usd: float | None) -> float | None:
    if budget_usd is None or budget_usd <= 0:
        return None
    return month_to_date_usd / budget_usd


def warns(month_to_date_usd: float, budget_usd: float | None, threshold: float = WARNING_SHARE) -> bool:
    """The 80% warning: at or past the threshold share of the budget (always, without a budget)."""
    share = budget_share(month_to_date_usd, budget_usd)
    return share is None or share >= threshold


# ---------------------------------------------------------------- fingerprints


def normalize_sql(sql: str) -> str:
    """One canonical text per query: whitespace, comments and keyword case do not change it."""
    try:
        statements = [s for s in sqlglot.parse(sql, read="bigquery") if s is not None]
    except SqlglotError:
        statements = []
    if len(statements) == 1:
        return statements[0].sql(dialect="bigquery", comments=False, normalize_functions="upper")
    return " ".join(sql.split())  # unparseable SQL never runs, but still gets a stable fingerprint


def _param_json(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return {"t": type(value).__name__, "v": value.isoformat()}
    if isinstance(value, (list, tuple)):
        return [_param_json(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return {"t": type(value).__name__, "v": value}
    return {"t": type(value).__name__, "v": str(value)}


def fingerprint(sql: str, params: Mapping[str, Any] | None = None) -> str:
    """SHA-256 of the normalized SQL and the parameters (names, types and values)."""
    payload = json.dumps(
        {"sql": normalize_sql(sql), "params": {k: _param_json(v) for k, v in sorted((params or {}).items())}},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def batch_fingerprint(fingerprints: Sequence[str]) -> str:
    """A batch (a backfill's queries, priced as a whole) is approved as a whole: order matters."""
    if len(fingerprints) == 1:
        return fingerprints[0]
    return hashlib.sha256(("batch\n" + "\n".join(fingerprints)).encode("ascii")).hexdigest()


# ---------------------------------------------------------------- approvals


class ApprovalStatus(str, enum.Enum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    USED = "used"
    EXPIRED = "expired"


@dataclass(frozen=True)
class ApprovalState:
    """What the rules need of an approval (the store's record carries more)."""

    id: str
    connection_id: str
    fingerprint: str
    status: ApprovalStatus
    expires_at: datetime
    cap_bytes: int  # the most the approved work may bill (its projection with the margin)


def effective_status(approval: ApprovalState, now: datetime) -> ApprovalStatus:
    """Pending and approved approvals lapse at `expires_at`; decided outcomes are final."""
    if approval.status in (ApprovalStatus.PENDING, ApprovalStatus.APPROVED) and now >= approval.expires_at:
        return ApprovalStatus.EXPIRED
    return approval.status


def check_decidable(approval: ApprovalState, now: datetime) -> None:
    """Only a pending, unexpired approval can be approved or rejected."""
    status = effective_status(approval, now)
    if status is not ApprovalStatus.PENDING:
        raise ApprovalInvalid(f"approval {approval.id} is {status.value}; only a pending approval can be decided")


def check_usable(
    approval: ApprovalState, *, connection_id: str, fingerprint: str, projected_billed: int, now: datetime
) -> None:
    """An approval lets exactly the query it was asked for run, once, before it expires, for no more
    than was approved. Raises `ApprovalInvalid` naming the first rule broken."""
    status = effective_status(approval, now)
    if approval.connection_id != connection_id:
        raise ApprovalInvalid(
            f"approval {approval.id} belongs to connection {approval.connection_id}, not {connection_id}"
        )
    if status is ApprovalStatus.USED:
        raise ApprovalInvalid(f"approval {approval.id} was already used: approvals are single-use")
    if status is ApprovalStatus.EXPIRED:
        raise ApprovalInvalid(f"approval {approval.id} expired at {approval.expires_at.isoformat()}")
    if status is not ApprovalStatus.APPROVED:
        raise ApprovalInvalid(f"approval {approval.id} is {status.value}, not approved")
    if approval.fingerprint != fingerprint:
        raise ApprovalInvalid(
            f"approval {approval.id} was given for another query (fingerprint {approval.fingerprint[:12]}…, this one "
            f"{fingerprint[:12]}…): a changed query needs a new approval"
        )
    if projected_billed > approval.cap_bytes:
        raise ApprovalInvalid(
            f"approval {approval.id} covers up to {approval.cap_bytes} bytes billed; the query now projects "
            f"{projected_billed}: it needs a new approval"
        )
