"""Seeded generation of a realistic sales and service org, vectorised with numpy so 1M opportunities fit in seconds.

Each object draws from its own random stream (`seed`, object number), so the same seed and size always give
the same rows. Rows go to the store in chunks through `insert(obj, columns)`, which keeps peak memory flat.
Timestamps are integer seconds since the epoch until they are formatted for storage.

Dates: every system timestamp (CreatedDate, LastModifiedDate, SystemModstamp, ClosedDate, CompletionDate,
ConvertedDate, deletions) lies within the two years before `now`. Planning dates behave as in a real org:
open opportunities may close up to 180 days ahead, open tasks are due up to two weeks ahead, and a
milestone's TargetDate may lie in the future.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ids import make_ids
from .schema import INDUSTRIES, LEAD_SOURCES, MILESTONE_TYPES, OBJECTS, OPPORTUNITY_STAGES, OPPORTUNITY_TYPES, REGIONS

DAY = 86_400
HISTORY_SPAN = 730 * DAY
CHUNK = 100_000
OPEN_STAGES = [s for s in OPPORTUNITY_STAGES if not s[3]]
Insert = Callable[[str, dict[str, list[Any]]], None]

FIRST_NAMES = (
    "James", "Mary", "Wei", "Aisha", "Lukas", "Sofia", "Mateo", "Yuki", "Olivia", "Noah", "Priya", "Omar",
    "Elena", "Kofi", "Hannah", "Diego", "Chloe", "Arjun", "Ingrid", "Tomasz", "Fatima", "Liam", "Mei", "Sven",
)  # fmt: skip
LAST_NAMES = (
    "Smith", "Garcia", "Chen", "Okafor", "Müller", "Rossi", "Tanaka", "Johnson", "Silva", "Kowalski", "Patel",
    "Nguyen", "Haddad", "Dubois", "Larsen", "Kim", "O'Brien", "Fischer", "Moreau", "Santos", "Novak", "Ali",
)  # fmt: skip
COMPANY_WORDS = (
    "Blue", "North", "Summit", "Apex", "River", "Granite", "Silver", "Nova", "Pioneer", "Atlas", "Cedar",
    "Harbor", "Vertex", "Orbit", "Crimson", "Evergreen", "Falcon", "Lumen", "Quantum", "Sterling",
)  # fmt: skip
COMPANY_NOUNS = ("Dynamics", "Logistics", "Health", "Foods", "Energy", "Systems", "Labs", "Media", "Capital", "Works")
COMPANY_SUFFIXES = ("Inc.", "LLC", "Ltd", "GmbH", "Group", "Corp.", "SA", "plc")
COUNTRIES = ("United States", "Germany", "United Kingdom", "France", "Japan", "Brazil", "India", "Canada", "Australia")
CITIES = ("Austin", "Berlin", "London", "Lyon", "Osaka", "São Paulo", "Pune", "Toronto", "Sydney", "Denver")
OPPORTUNITY_KINDS = ("New Business", "Renewal", "Upsell", "Expansion", "Services", "Pilot")
CASE_SUBJECTS = (
    "Cannot log in", "Invoice discrepancy", "Integration failing", "Feature request: export", "Slow dashboard",
    "Data sync error", "Password reset", "Billing address change", "API rate limit questions", "Onboarding help",
)  # fmt: skip
TASK_SUBJECTS = ("Call", "Send quote", "Follow up", "Email", "Send letter", "Prepare proposal", "Demo")


@dataclass(frozen=True)
class OrgSizes:
    """Record counts per object, proportionate to the number of opportunities."""

    opportunities: int
    users: int
    accounts: int
    leads: int
    campaigns: int
    campaign_members: int
    cases: int
    tasks: int
    events: int
    deal_reviews: int
    contacts_per_account: int = 2

    @classmethod
    def for_opportunities(cls, opportunities: int) -> OrgSizes:
        n = max(1, opportunities)
        return cls(
            opportunities=n,
            users=int(np.clip(n // 2000, 8, 400)),
            accounts=max(10, n // 10),
            leads=max(20, n // 4),
            campaigns=int(np.clip(n // 2000, 6, 1000)),
            campaign_members=max(20, n // 5),
            cases=max(20, n // 5),
            tasks=max(20, n // 3),
            events=max(10, n // 6),
            deal_reviews=max(5, n // 20),
        )

    @property
    def contacts(self) -> int:
        return self.accounts * self.contacts_per_account


# ---------------------------------------------------------------- formatting helpers


def epoch_seconds(seconds: np.ndarray) -> list[int]:
    """Datetimes are stored as epoch seconds (see `values`)."""
    return np.asarray(seconds, dtype=np.int64).tolist()


def fmt_dates(seconds: np.ndarray) -> list[str]:
    # Few distinct days: format each once, then look the strings up.
    days, inverse = np.unique(np.asarray(seconds, dtype=np.int64) // DAY, return_inverse=True)
    table = np.array(np.datetime_as_string(days.astype("datetime64[D]")).tolist(), dtype=object)
    return table[inverse.reshape(-1)].tolist()


def with_nulls(values: list[Any], mask: np.ndarray) -> list[Any]:
    for index in np.flatnonzero(mask):
        values[index] = None
    return values


def pick(rng: np.random.Generator, values: Sequence[Any], n: int, p: Sequence[float] | None = None) -> list[Any]:
    table = np.empty(len(values), dtype=object)
    table[:] = list(values)
    weights = None if p is None else np.asarray(p, dtype=float) / np.sum(p)
    return table[rng.choice(len(values), size=n, p=weights)].tolist()


def money(rng: np.random.Generator, n: int, median: float, sigma: float = 0.9) -> np.ndarray:
    return np.round(rng.lognormal(np.log(median), sigma, n) / 100.0) * 100.0


# ---------------------------------------------------------------- the generator


class OrgGenerator:
    """Generates every object in dependency order; keeps only the per-record arrays children need."""

    def __init__(self, insert: Insert, seed: int, sizes: OrgSizes, now_seconds: int):
        self.insert = insert
        self.seed = seed
        self.sizes = sizes
        self.now = int(now_seconds)
        self.start = self.now - HISTORY_SPAN
        self.deleted: list[tuple[str, str, int]] = []  # (object, id, deleted epoch seconds) for the delete log
        self._id_cache: dict[str, np.ndarray] = {}

    def rng(self, obj: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, list(OBJECTS).index(obj)])

    def ids(self, obj: str, index: np.ndarray) -> list[str]:
        cached = self._id_cache.get(obj)
        if cached is not None:
            return cached[np.asarray(index, dtype=np.int64)].tolist()
        prefix = OBJECTS[obj].key_prefix
        assert prefix is not None
        return make_ids(prefix, index)

    def cache_ids(self, obj: str, count: int) -> None:
        """Parents referenced many times: mint their ids once and look them up."""
        table = np.empty(count, dtype=object)
        table[:] = make_ids(OBJECTS[obj].key_prefix or "", np.arange(count, dtype=np.int64))
        self._id_cache[obj] = table

    def run(self) -> None:
        for obj, count in (
            ("User", self.sizes.users),
            ("Campaign", self.sizes.campaigns),
            ("Account", self.sizes.accounts),
        ):
            self.cache_ids(obj, count)
        self.cache_ids("MilestoneType", len(MILESTONE_TYPES))
        self.users()
        self.milestone_types()
        self.accounts()
        self.contacts()
        self.campaigns()
        self.opportunities()
        self.leads()
        self.campaign_members()
        self.cases()
        self.tasks()
        self.events()
        self.deal_reviews()

    # ------------------------------------------------------------ shared columns

    def system_columns(
        self,
        rng: np.random.Generator,
        obj: str,
        index: np.ndarray,
        created: np.ndarray,
        modified: np.ndarray,
        *,
        owner: bool = True,
        deletable: bool = False,
    ) -> dict[str, list[Any]]:
        n: int = index.shape[0]
        modified = np.maximum(modified, created)
        deleted = np.zeros(n, dtype=bool)
        if deletable:
            # ~0.5% soft-deleted within the last 20 days: they feed queryAll and the /deleted endpoint.
            deleted = rng.random(n) < 0.005
            when = self.now - rng.integers(60, 20 * DAY, n)
            modified = np.where(deleted, np.maximum(when, modified + 60), modified)
            modified = np.minimum(modified, self.now)
        # The generated history happened before the org's `now`: a record whose stamp would land on or after
        # it is stamped one second earlier, so a replication window that starts at `now` sees only the
        # changes made since (clamping to `now` itself piled ~2.5% of the records onto that one second,
        # which every first getUpdated window then returned as 'changed').
        modified = np.maximum(np.minimum(modified, self.now - 1), created)
        stamp = np.maximum(
            np.minimum(modified + rng.integers(0, 2, n) * rng.integers(0, 120, n), self.now - 1), modified
        )
        users = self.sizes.users
        ids = self.ids(obj, index)
        columns: dict[str, list[Any]] = {
            "Id": ids,
            "IsDeleted": deleted.astype(int).tolist(),
            "CreatedDate": epoch_seconds(created),
            "CreatedById": self.ids("User", rng.integers(0, users, n)),
            "SystemModstamp": epoch_seconds(stamp),
        }
        if "LastModifiedDate" in {f.name for f in OBJECTS[obj].fields}:
            columns["LastModifiedDate"] = epoch_seconds(modified)
            columns["LastModifiedById"] = self.ids("User", rng.integers(0, users, n))
        if owner:
            columns["OwnerId"] = self.ids("User", rng.integers(0, users, n))
        if deleted.any():
            stamps = columns["SystemModstamp"]
            self.deleted.extend((obj, ids[i], stamps[i]) for i in np.flatnonzero(deleted))
        return columns

    def created_between(self, rng: np.random.Generator, n: int, low: Any, high: Any) -> np.ndarray:
        low_arr = np.broadcast_to(np.asarray(low, dtype=np.int64), (n,))
        high_arr = np.maximum(np.broadcast_to(np.asarray(high, dtype=np.int64), (n,)), low_arr + 1)
        return (low_arr + rng.random(n) * (high_arr - low_arr)).astype(np.int64)

    def chunks(self, total: int):
        for first in range(0, total, CHUNK):
            yield np.arange(first, min(total, first + CHUNK), dtype=np.int64)

    # ------------------------------------------------------------ objects

    def users(self) -> None:
        rng = self.rng("User")
        n = self.sizes.users
        index = np.arange(n, dtype=np.int64)
        created = self.created_between(rng, n, self.start, self.start + 30 * DAY)
        modified = self.created_between(rng, n, created, self.now)
        first = pick(rng, FIRST_NAMES, n)
        last = pick(rng, LAST_NAMES, n)
        columns = self.system_columns(rng, "User", index, created, modified, owner=False)
        managers = self.ids("User", np.minimum(index // 8, n - 1))
        columns.update(
            Username=[
                f"{f.lower()}.{surname.lower().replace(chr(39), '')}{i}@dfx-sandbox.example"
                for i, f, surname in zip(index, first, last)
            ],
            FirstName=first,
            LastName=last,
            Name=[f"{f} {surname}" for f, surname in zip(first, last)],
            Email=[f"{f.lower()}.{i}@dfx-sandbox.example" for i, f in zip(index, first)],
            Title=pick(rng, ("Account Executive", "Sales Manager", "SDR", "Support Engineer", "VP Sales"), n),
            Department=pick(rng, ("Sales", "Support", "Marketing"), n, (6, 3, 1)),
            IsActive=(rng.random(n) < 0.93).astype(int).tolist(),
            ManagerId=with_nulls(managers, index == 0),
        )
        self.insert("User", columns)

    def milestone_types(self) -> None:
        rng = self.rng("MilestoneType")
        n = len(MILESTONE_TYPES)
        index = np.arange(n, dtype=np.int64)
        created = np.full(n, self.start, dtype=np.int64)
        columns = self.system_columns(rng, "MilestoneType", index, created, created, owner=False)
        columns.update(Name=list(MILESTONE_TYPES), Description=[f"Entitlement milestone: {m}" for m in MILESTONE_TYPES])
        self.insert("MilestoneType", columns)

    def accounts(self) -> None:
        rng = self.rng("Account")
        n = self.sizes.accounts
        self.account_created = np.empty(n, dtype=np.int64)
        self.account_names: list[str] = []
        for index in self.chunks(n):
            m = index.shape[0]
            created = self.created_between(rng, m, self.start, self.now - 30 * DAY)
            modified = self.created_between(rng, m, created, self.now)
            self.account_created[index] = created
            names = [
                f"{w} {noun} {suffix}"
                for w, noun, suffix in zip(
                    pick(rng, COMPANY_WORDS, m), pick(rng, COMPANY_NOUNS, m), pick(rng, COMPANY_SUFFIXES, m)
                )
            ]
            self.account_names.extend(names)
            columns = self.system_columns(rng, "Account", index, created, modified)
            parents = self.ids("Account", np.maximum(index - rng.integers(1, 50, m), 0))
            columns.update(
                Name=names,
                Type=pick(
                    rng,
                    ("Prospect", "Customer - Direct", "Customer - Channel", "Partner", "Other"),
                    m,
                    (4, 4, 1, 1, 0.5),
                ),
                Industry=pick(rng, INDUSTRIES, m),
                Rating=with_nulls(pick(rng, ("Hot", "Warm", "Cold"), m), rng.random(m) < 0.3),
                AccountSource=pick(rng, LEAD_SOURCES, m),
                AnnualRevenue=with_nulls(money(rng, m, 5_000_000, 1.4).tolist(), rng.random(m) < 0.2),
                NumberOfEmployees=with_nulls(
                    rng.lognormal(4.5, 1.5, m).astype(int).clip(1, 250_000).tolist(), rng.random(m) < 0.15
                ),
                BillingCity=pick(rng, CITIES, m),
                BillingCountry=pick(rng, COUNTRIES, m),
                Website=[f"https://www.{name.split()[0].lower()}{i}.example" for i, name in zip(index, names)],
                Phone=[f"+1 555 {i % 10_000:04d}" for i in index],
                ParentId=with_nulls(parents, (rng.random(m) > 0.05) | (index == 0)),
                Description=with_nulls([f"{name} account notes." for name in names], rng.random(m) < 0.8),
            )
            self.insert("Account", columns)

    def contacts(self) -> None:
        rng = self.rng("Contact")
        per = self.sizes.contacts_per_account
        for index in self.chunks(self.sizes.contacts):
            m = index.shape[0]
            account = index // per
            created = self.created_between(rng, m, self.account_created[account], self.now - DAY)
            modified = self.created_between(rng, m, created, self.now)
            first, last = pick(rng, FIRST_NAMES, m), pick(rng, LAST_NAMES, m)
            columns = self.system_columns(rng, "Contact", index, created, modified)
            columns.update(
                AccountId=self.ids("Account", account),
                FirstName=first,
                LastName=last,
                Name=[f"{f} {surname}" for f, surname in zip(first, last)],
                Email=[f"{f.lower()}.{i}@customer.example" for i, f in zip(index, first)],
                Title=pick(rng, ("CEO", "CFO", "VP Operations", "IT Manager", "Procurement Lead", "Engineer"), m),
                Department=pick(rng, ("Finance", "IT", "Operations", "Executive"), m),
                Phone=[f"+1 555 {(i * 7) % 10_000:04d}" for i in index],
                LeadSource=pick(rng, LEAD_SOURCES, m),
                MailingCountry=pick(rng, COUNTRIES, m),
            )
            self.insert("Contact", columns)

    def campaigns(self) -> None:
        rng = self.rng("Campaign")
        n = self.sizes.campaigns
        index = np.arange(n, dtype=np.int64)
        start = self.created_between(rng, n, self.start + 30 * DAY, self.now + 30 * DAY) // DAY * DAY
        end = start + rng.integers(7, 90, n) * DAY
        created = np.minimum(np.maximum(start - rng.integers(5, 30, n) * DAY, self.start), self.now - DAY)
        modified = self.created_between(rng, n, created, self.now)
        status = np.where(start > self.now, "Planned", np.where(end > self.now, "In Progress", "Completed")).astype(
            object
        )
        status[(status == "Completed") & (rng.random(n) < 0.05)] = "Aborted"
        self.campaign_start = start
        columns = self.system_columns(rng, "Campaign", index, created, modified)
        budget = money(rng, n, 20_000, 0.7)
        columns.update(
            Name=[
                f"{t} {fmt_dates(s[None])[0][:7]} #{i}"
                for i, t, s in zip(index, pick(rng, ("Webinar", "Conference", "Email Blast", "Ads"), n), start)
            ],
            Type=pick(rng, ("Webinar", "Conference", "Email", "Advertisement", "Direct Mail", "Partners"), n),
            Status=status.tolist(),
            StartDate=fmt_dates(start),
            EndDate=fmt_dates(end),
            IsActive=np.isin(status, ["Planned", "In Progress"]).astype(int).tolist(),
            BudgetedCost=budget.tolist(),
            ActualCost=with_nulls(np.round(budget * rng.uniform(0.6, 1.3, n), 2).tolist(), status == "Planned"),
            NumberSent=rng.integers(100, 20_000, n).astype(float).tolist(),
            ParentId=[None] * n,
            Sourced_Pipeline__c=[None] * n,
        )
        self.insert("Campaign", columns)

    def opportunities(self) -> None:
        rng = self.rng("Opportunity")
        n = self.sizes.opportunities
        # Kept for children (history, leads, tasks, reviews).
        self.opp_account = np.empty(n, dtype=np.int64)
        self.opp_created = np.empty(n, dtype=np.int64)
        self.opp_last_change = np.empty(n, dtype=np.int64)
        self.opp_stage = np.empty(n, dtype=np.int8)
        self.opp_reached = np.empty(n, dtype=np.int8)  # furthest open stage reached, for the history
        self.opp_amount = np.empty(n, dtype=np.float64)
        self.opp_close = np.empty(n, dtype=np.int64)
        stage_names = np.array([s[0] for s in OPPORTUNITY_STAGES], dtype=object)
        probabilities = np.array([s[1] for s in OPPORTUNITY_STAGES], dtype=float)
        forecasts = np.array([s[2] for s in OPPORTUNITY_STAGES], dtype=object)
        won_code, lost_code = 8, 9
        for index in self.chunks(n):
            m = index.shape[0]
            account = rng.integers(0, self.sizes.accounts, m)
            created = self.created_between(
                rng, m, np.maximum(self.start, self.account_created[account] + DAY), self.now - DAY
            )
            cycle = np.clip(rng.lognormal(np.log(45), 0.8, m), 1, 540).astype(np.int64) * DAY
            expected_close = created + cycle
            closed = (expected_close < self.now) & (rng.random(m) < 0.92)
            won = closed & (rng.random(m) < 0.36)
            open_stage = np.minimum(rng.geometric(0.28, m) - 1, len(OPEN_STAGES) - 1)
            stage = np.where(won, won_code, np.where(closed, lost_code, open_stage)).astype(np.int8)
            reached = np.where(
                won, len(OPEN_STAGES) - 1, np.where(closed, rng.integers(0, len(OPEN_STAGES), m), open_stage)
            )
            close = np.where(closed, expected_close, np.minimum(expected_close, self.now + 180 * DAY))
            close_day = close // DAY * DAY
            closed_at = np.minimum(close_day + 17 * 3600, self.now)
            modified = np.where(
                closed,
                np.minimum(closed_at + (rng.random(m) ** 3 * 30 * DAY).astype(np.int64), self.now),
                self.created_between(rng, m, created, self.now),
            )
            amount = money(rng, m, 24_000, 1.0)
            amount_null = rng.random(m) < 0.05
            probability = probabilities[stage]
            expected_revenue = np.round(amount * probability / 100.0, 2)
            self.opp_account[index] = account
            self.opp_created[index] = created
            self.opp_last_change[index] = np.where(
                closed, np.maximum(closed_at, created + 3600), np.maximum(modified, created)
            )
            self.opp_stage[index] = stage
            self.opp_reached[index] = reached
            self.opp_amount[index] = np.where(amount_null, np.nan, amount)
            self.opp_close[index] = close_day
            columns = self.system_columns(rng, "Opportunity", index, created, modified, deletable=True)
            close_dates = fmt_dates(close_day)
            campaigns = self.ids("Campaign", rng.integers(0, self.sizes.campaigns, m))
            close_year = close_day.astype("datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
            close_month = close_day.astype("datetime64[s]").astype("datetime64[M]").astype(int) % 12 + 1
            columns.update(
                Name=[f"{self.account_names[a]} - {kind}" for a, kind in zip(account, pick(rng, OPPORTUNITY_KINDS, m))],
                AccountId=self.ids("Account", account),
                Amount=with_nulls(amount.tolist(), amount_null),
                CloseDate=close_dates,
                StageName=stage_names[stage].tolist(),
                Probability=probability.tolist(),
                ExpectedRevenue=with_nulls(expected_revenue.tolist(), amount_null),
                IsClosed=closed.astype(int).tolist(),
                IsWon=won.astype(int).tolist(),
                ForecastCategoryName=forecasts[stage].tolist(),
                Type=pick(rng, OPPORTUNITY_TYPES, m, (5, 2.5, 1, 0.5)),
                LeadSource=with_nulls(pick(rng, LEAD_SOURCES, m), rng.random(m) < 0.1),
                CampaignId=with_nulls(campaigns, rng.random(m) > 0.3),
                NextStep=with_nulls(
                    pick(rng, ("Send proposal", "Schedule demo", "Legal review", "Follow up"), m),
                    closed | (rng.random(m) < 0.4),
                ),
                FiscalYear=close_year.tolist(),
                FiscalQuarter=((close_month - 1) // 3 + 1).tolist(),
                Description=with_nulls(["Opportunity notes."] * m, rng.random(m) < 0.9),
                Region__c=pick(rng, REGIONS, m, (5, 3, 2, 1)),
                Forecast_Score__c=with_nulls(np.round(rng.uniform(0, 100, m), 1).tolist(), rng.random(m) < 0.7),
                Weighted_Amount__c=with_nulls(expected_revenue.tolist(), amount_null),
            )
            self.insert("Opportunity", columns)
        self.opportunity_history()

    def opportunity_history(self) -> None:
        """One snapshot per stage an opportunity went through: its creation stage up to its current one."""
        rng = self.rng("OpportunityHistory")
        n = self.sizes.opportunities
        stage_names = np.array([s[0] for s in OPPORTUNITY_STAGES], dtype=object)
        probabilities = np.array([s[1] for s in OPPORTUNITY_STAGES], dtype=float)
        forecasts = np.array([s[2] for s in OPPORTUNITY_STAGES], dtype=object)
        written = 0
        for opps in self.chunks(n):
            reached = self.opp_reached[opps].astype(np.int64)
            final = self.opp_stage[opps].astype(np.int64)
            is_closed = final >= len(OPEN_STAGES)
            # Open stages visited: creation stage, at most two in between, the furthest reached; then the close.
            visited = np.minimum(reached, rng.integers(0, 2, opps.shape[0])) + 1
            rows = visited + is_closed
            opp = np.repeat(opps, rows)
            first_row = np.repeat(np.cumsum(rows) - rows, rows)
            step = np.arange(opp.shape[0]) - first_row
            count = rows[np.repeat(np.arange(opps.shape[0]), rows)]
            n_visited = np.repeat(visited, rows)
            reached_r = np.repeat(reached, rows)
            open_code = np.where(n_visited > 1, np.round(step * reached_r / np.maximum(n_visited - 1, 1)), 0).astype(
                np.int64
            )
            code = np.where(step >= n_visited, np.repeat(final, rows), np.minimum(open_code, reached_r))
            code = np.where((step == n_visited - 1) & ~np.repeat(is_closed, rows), np.repeat(final, rows), code)
            created = self.opp_created[opp]
            span = self.opp_last_change[opp] - created
            when = created + (span * step / np.maximum(count - 1, 1)).astype(np.int64)
            m = opp.shape[0]
            index = np.arange(written, written + m, dtype=np.int64)
            written += m
            amount = self.opp_amount[opp]
            amount_null = np.isnan(amount)
            probability = probabilities[code]
            columns = self.system_columns(rng, "OpportunityHistory", index, when, when, owner=False)
            columns.update(
                OpportunityId=self.ids("Opportunity", opp),
                StageName=stage_names[code].tolist(),
                Amount=with_nulls(np.nan_to_num(amount).tolist(), amount_null),
                ExpectedRevenue=with_nulls(
                    np.round(np.nan_to_num(amount) * probability / 100, 2).tolist(), amount_null
                ),
                CloseDate=fmt_dates(self.opp_close[opp]),
                Probability=probability.tolist(),
                ForecastCategory=forecasts[code].tolist(),
            )
            self.insert("OpportunityHistory", columns)
        self.history_rows = written

    def leads(self) -> None:
        rng = self.rng("Lead")
        n = self.sizes.leads
        # About a quarter of leads converted, each into its own opportunity.
        converted_count = min(n // 4, self.sizes.opportunities)
        converted_opp = np.full(n, -1, dtype=np.int64)
        converted_slots = rng.choice(n, size=converted_count, replace=False)
        converted_opp[converted_slots] = rng.choice(self.sizes.opportunities, size=converted_count, replace=False)
        for index in self.chunks(n):
            m = index.shape[0]
            opp = converted_opp[index]
            converted = opp >= 0
            opp_safe = np.where(converted, opp, 0)
            converted_at = self.opp_created[opp_safe]
            created = np.where(
                converted,
                np.maximum(converted_at - rng.integers(DAY, 60 * DAY, m), self.start),
                self.created_between(rng, m, self.start, self.now - 3600),
            )
            created = np.minimum(created, np.where(converted, converted_at - 60, self.now))
            modified = np.where(converted, converted_at, self.created_between(rng, m, created, self.now))
            status = np.array(pick(rng, LEAD_STATUSES_OPEN, m, (3, 4, 3)), dtype=object)
            status[converted] = "Closed - Converted"
            account = self.opp_account[opp_safe]
            contact = account * self.sizes.contacts_per_account + rng.integers(0, self.sizes.contacts_per_account, m)
            first, last = pick(rng, FIRST_NAMES, m), pick(rng, LAST_NAMES, m)
            columns = self.system_columns(rng, "Lead", index, created, modified, deletable=True)
            companies = [f"{w} {noun}" for w, noun in zip(pick(rng, COMPANY_WORDS, m), pick(rng, COMPANY_NOUNS, m))]
            columns.update(
                FirstName=first,
                LastName=last,
                Name=[f"{f} {surname}" for f, surname in zip(first, last)],
                Company=[
                    self.account_names[a] if c else company for a, c, company in zip(account, converted, companies)
                ],
                Email=[f"{f.lower()}.{i}@lead.example" for i, f in zip(index, first)],
                Status=status.tolist(),
                LeadSource=pick(rng, LEAD_SOURCES, m),
                Industry=pick(rng, INDUSTRIES, m),
                Rating=with_nulls(pick(rng, ("Hot", "Warm", "Cold"), m), rng.random(m) < 0.4),
                Country=pick(rng, COUNTRIES, m),
                AnnualRevenue=with_nulls(money(rng, m, 2_000_000, 1.3).tolist(), rng.random(m) < 0.5),
                NumberOfEmployees=with_nulls(
                    rng.lognormal(4, 1.4, m).astype(int).clip(1, 100_000).tolist(), rng.random(m) < 0.4
                ),
                IsConverted=converted.astype(int).tolist(),
                ConvertedDate=with_nulls(fmt_dates(converted_at), ~converted),
                ConvertedAccountId=with_nulls(self.ids("Account", account), ~converted),
                ConvertedContactId=with_nulls(self.ids("Contact", contact), ~converted),
                ConvertedOpportunityId=with_nulls(self.ids("Opportunity", opp_safe), ~converted),
            )
            self.insert("Lead", columns)

    def campaign_members(self) -> None:
        rng = self.rng("CampaignMember")
        for index in self.chunks(self.sizes.campaign_members):
            m = index.shape[0]
            campaign = rng.integers(0, self.sizes.campaigns, m)
            starts = self.campaign_start[campaign]
            created = np.clip(starts - rng.integers(0, 10 * DAY, m), self.start, self.now - 60)
            responded = (rng.random(m) < 0.3) & (starts < self.now)
            responded_at = np.minimum(starts + rng.integers(0, 14 * DAY, m), self.now)
            modified = np.where(responded, responded_at, created)
            is_lead = rng.random(m) < 0.5
            columns = self.system_columns(rng, "CampaignMember", index, created, modified, owner=False)
            columns.update(
                CampaignId=self.ids("Campaign", campaign),
                LeadId=with_nulls(self.ids("Lead", rng.integers(0, self.sizes.leads, m)), ~is_lead),
                ContactId=with_nulls(self.ids("Contact", rng.integers(0, self.sizes.contacts, m)), is_lead),
                Status=np.where(responded, "Responded", "Sent").tolist(),
                HasResponded=responded.astype(int).tolist(),
                FirstRespondedDate=with_nulls(fmt_dates(responded_at), ~responded),
            )
            self.insert("CampaignMember", columns)

    def cases(self) -> None:
        rng = self.rng("Case")
        n = self.sizes.cases
        self.case_account = np.empty(n, dtype=np.int64)
        self.case_created = np.empty(n, dtype=np.int64)
        self.case_closed_at = np.empty(n, dtype=np.int64)  # -1 while open
        self.case_priority = np.empty(n, dtype=np.int8)
        for index in self.chunks(n):
            m = index.shape[0]
            account = rng.integers(0, self.sizes.accounts, m)
            created = self.created_between(
                rng, m, np.maximum(self.start, self.account_created[account]), self.now - 600
            )
            resolution = np.clip(rng.lognormal(np.log(30 * 3600), 1.2, m), 600, 60 * DAY).astype(np.int64)
            closed = (created + resolution < self.now) & (rng.random(m) < 0.97)
            closed_at = np.where(closed, created + resolution, -1)
            status = np.array(pick(rng, ("New", "Working", "Escalated"), m, (3, 6, 1)), dtype=object)
            status[closed] = "Closed"
            priority = rng.choice(3, size=m, p=(0.2, 0.5, 0.3))
            modified = np.where(closed, closed_at, self.created_between(rng, m, created, self.now))
            self.case_account[index] = account
            self.case_created[index] = created
            self.case_closed_at[index] = closed_at
            self.case_priority[index] = priority
            columns = self.system_columns(rng, "Case", index, created, modified, deletable=True)
            columns.update(
                CaseNumber=[f"{i + 1001:08d}" for i in index],
                AccountId=self.ids("Account", account),
                ContactId=self.ids(
                    "Contact",
                    account * self.sizes.contacts_per_account + rng.integers(0, 2, m) % self.sizes.contacts_per_account,
                ),
                Subject=pick(rng, CASE_SUBJECTS, m),
                Status=status.tolist(),
                Priority=np.array(["High", "Medium", "Low"], dtype=object)[priority].tolist(),
                Origin=pick(rng, ("Phone", "Email", "Web"), m, (2, 5, 3)),
                Type=pick(rng, ("Question", "Problem", "Feature Request"), m, (4, 5, 1)),
                Reason=pick(rng, ("Installation", "Equipment Complexity", "Performance", "Breakdown", "Other"), m),
                IsClosed=closed.astype(int).tolist(),
                ClosedDate=with_nulls(epoch_seconds(np.maximum(closed_at, 0)), ~closed),
                IsEscalated=(status == "Escalated").astype(int).tolist(),
                Description=with_nulls(["Customer reported an issue."] * m, rng.random(m) < 0.5),
            )
            self.insert("Case", columns)
        self.case_milestones()

    def case_milestones(self) -> None:
        """Every case gets a First Response milestone; half also a Resolution Time one."""
        rng = self.rng("CaseMilestone")
        first_response_mins = np.array([60, 240, 480])
        resolution_mins = np.array([1440, 2880, 7200])
        written = 0
        for cases in self.chunks(self.sizes.cases):
            rows = 1 + (rng.random(cases.shape[0]) < 0.5)
            case = np.repeat(cases, rows)
            kind = np.arange(case.shape[0]) - np.repeat(np.cumsum(rows) - rows, rows)  # 0 first response, 1 resolution
            m = case.shape[0]
            start = self.case_created[case]
            priority = self.case_priority[case]
            target_mins = np.where(kind == 0, first_response_mins[priority], resolution_mins[priority])
            response = start + np.clip(rng.lognormal(np.log(target_mins * 60 * 0.6), 0.9), 60, 30 * DAY).astype(
                np.int64
            )
            closed_at = self.case_closed_at[case]
            completion = np.where(
                kind == 0, np.where(closed_at >= 0, np.minimum(response, closed_at), response), closed_at
            )
            completed = (completion >= 0) & (completion <= self.now)
            target = start + target_mins * 60
            reference = np.where(completed, completion, self.now)
            index = np.arange(written, written + m, dtype=np.int64)
            written += m
            columns = self.system_columns(
                rng, "CaseMilestone", index, start, np.where(completed, completion, start), owner=False
            )
            columns.update(
                CaseId=self.ids("Case", case),
                MilestoneTypeId=self.ids("MilestoneType", kind),
                StartDate=epoch_seconds(start),
                TargetDate=epoch_seconds(target),
                CompletionDate=with_nulls(epoch_seconds(np.maximum(completion, 0)), ~completed),
                IsCompleted=completed.astype(int).tolist(),
                IsViolated=(reference > target).astype(int).tolist(),
                TargetResponseInMins=target_mins.tolist(),
                ElapsedTimeInMins=((reference - start) // 60).tolist(),
            )
            self.insert("CaseMilestone", columns)

    def _activity_targets(self, rng: np.random.Generator, m: int) -> tuple[list[Any], list[Any], list[Any], np.ndarray]:
        """WhatId (opportunity, account or case), WhoId (a contact, sometimes), AccountId, and the what's creation."""
        kind = rng.choice(3, size=m, p=(0.6, 0.2, 0.2))
        opp = rng.integers(0, self.sizes.opportunities, m)
        account = rng.integers(0, self.sizes.accounts, m)
        case = rng.integers(0, self.sizes.cases, m)
        account_of = np.where(kind == 0, self.opp_account[opp], np.where(kind == 1, account, self.case_account[case]))
        opp_ids, account_ids, case_ids = (
            self.ids("Opportunity", opp),
            self.ids("Account", account),
            self.ids("Case", case),
        )
        what = [o if k == 0 else (a if k == 1 else c) for k, o, a, c in zip(kind, opp_ids, account_ids, case_ids)]
        who = self.ids("Contact", account_of * self.sizes.contacts_per_account)
        who = with_nulls(who, rng.random(m) < 0.5)
        since = np.where(
            kind == 0,
            self.opp_created[opp],
            np.where(kind == 1, self.account_created[account], self.case_created[case]),
        )
        return what, who, self.ids("Account", account_of), since

    def tasks(self) -> None:
        rng = self.rng("Task")
        for index in self.chunks(self.sizes.tasks):
            m = index.shape[0]
            what, who, account, since = self._activity_targets(rng, m)
            created = self.created_between(rng, m, since, self.now - 60)
            due = (created + rng.integers(0, 14, m) * DAY) // DAY * DAY
            done = (due < self.now) & (rng.random(m) < 0.85)
            status = np.array(
                pick(rng, ("Not Started", "In Progress", "Waiting on someone else", "Deferred"), m, (5, 3, 1, 1)),
                dtype=object,
            )
            status[done] = "Completed"
            kind = rng.choice(4, size=m, p=(0.4, 0.35, 0.1, 0.15))
            kinds = np.array(["Call", "Email", "Meeting", "Other"], dtype=object)[kind]
            subtype = np.where(kind == 0, "Call", np.where(kind == 1, "Email", "Task"))
            modified = np.where(done, np.minimum(np.maximum(due, created) + rng.integers(0, DAY, m), self.now), created)
            columns = self.system_columns(rng, "Task", index, created, modified, deletable=True)
            columns.update(
                Subject=[s if k == "Other" else f"{k}: {s}" for k, s in zip(kinds, pick(rng, TASK_SUBJECTS, m))],
                Status=status.tolist(),
                Priority=pick(rng, ("High", "Normal", "Low"), m, (2, 7, 1)),
                Type=kinds.tolist(),
                TaskSubtype=subtype.tolist(),
                ActivityDate=fmt_dates(due),
                WhoId=who,
                WhatId=what,
                AccountId=account,
                IsClosed=done.astype(int).tolist(),
                CallDurationInSeconds=with_nulls(rng.integers(30, 3600, m).tolist(), ~((kind == 0) & done)),
                Description=[None] * m,
            )
            self.insert("Task", columns)

    def events(self) -> None:
        rng = self.rng("Event")
        for index in self.chunks(self.sizes.events):
            m = index.shape[0]
            what, who, account, since = self._activity_targets(rng, m)
            created = self.created_between(rng, m, since, self.now - 60)
            start = (created + rng.integers(0, 20, m) * DAY) // DAY * DAY + rng.integers(8, 18, m) * 3600
            duration = rng.choice(np.array([30, 60, 90]), size=m, p=(0.4, 0.5, 0.1))
            modified = self.created_between(rng, m, created, np.maximum(np.minimum(start, self.now), created + 1))
            columns = self.system_columns(rng, "Event", index, created, modified, deletable=True)
            columns.update(
                Subject=pick(rng, ("Discovery call", "Demo", "QBR", "Kickoff", "Negotiation meeting"), m),
                Type=pick(rng, ("Call", "Email", "Meeting", "Other"), m, (3, 0.5, 6, 0.5)),
                EventSubtype=["Event"] * m,
                ActivityDateTime=epoch_seconds(start),
                ActivityDate=fmt_dates(start),
                StartDateTime=epoch_seconds(start),
                EndDateTime=epoch_seconds(start + duration * 60),
                DurationInMinutes=duration.tolist(),
                Location=with_nulls(pick(rng, ("Zoom", "Customer office", "HQ"), m), rng.random(m) < 0.3),
                WhoId=who,
                WhatId=what,
                AccountId=account,
            )
            self.insert("Event", columns)

    def deal_reviews(self) -> None:
        rng = self.rng("Deal_Review__c")
        n = self.sizes.deal_reviews
        index = np.arange(n, dtype=np.int64)
        opp = rng.integers(0, self.sizes.opportunities, n)
        created = self.created_between(
            rng, n, self.opp_created[opp], np.minimum(self.opp_last_change[opp] + DAY, self.now)
        )
        created = np.minimum(created, self.now - 60)
        modified = self.created_between(rng, n, created, self.now)
        columns = self.system_columns(rng, "Deal_Review__c", index, created, modified)
        columns.update(
            Name=[f"DR-{i + 1:06d}" for i in index],
            Opportunity__c=self.ids("Opportunity", opp),
            Reviewer__c=self.ids("User", rng.integers(0, self.sizes.users, n)),
            Review_Date__c=fmt_dates(created),
            Risk_Level__c=pick(rng, ("Low", "Medium", "High"), n, (5, 3, 2)),
            Score__c=np.round(rng.uniform(1, 10, n), 1).tolist(),
            Approved__c=(rng.random(n) < 0.6).astype(int).tolist(),
            Notes__c=with_nulls(["Reviewed pricing and risks."] * n, rng.random(n) < 0.5),
        )
        self.insert("Deal_Review__c", columns)


LEAD_STATUSES_OPEN = ("Open - Not Contacted", "Working - Contacted", "Closed - Not Converted")
