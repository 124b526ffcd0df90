"""The Jira sync sensor equals a full recompute (property-style): seeded random batches of changes on a
live Cloud site (issues created, committed, closed, reopened from done, moved back to the backlog,
worklogs logged on past days, estimates set and cleared) with the clock crossing day boundaries; after
each batch one sensor tick and the runs it requests (with faults injected), then every value the metric
store holds must equal a fresh computation of the same metric over the same days.

The store starts with every metric computed (daily ones over the window before the first change); days
the changes reach after that are compared once a run has stored them.
"""

import random
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.connectors.jira.compute import METRICS
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sensors import jira_sync_sensor
from dfx_pipelines.platform.partitions import sync_partitions
from dfx_pipelines.platform.resources import PlatformResource
from dfx_pipelines.platform.services import Platform

from .conftest import Materializer, connect_cloud, make_sandbox, range_tags, resource_for

SEED = 20261202
# A long, bounded property run (every batch re-reads the sandbox and recomputes every metric); the suite's
# 300 s limit is there to catch hangs, and on two loaded cores under xdist this test alone can take longer.
pytestmark = pytest.mark.timeout(900)

BATCHES = 4  # random change batches, each followed by one sensor tick and its runs
CHANGES_PER_BATCH = 6
WINDOW_DAYS = 20
ISSUES = 120  # a small site: every run reads a board's whole project
DAILY = sorted(name for name, metric in METRICS.items() if metric.daily)
SNAPSHOT = sorted(name for name, metric in METRICS.items() if not metric.daily)
SOFTWARE = ("ALPHA", "BETA")  # the projects of the selected boards


def values(rows: Any) -> list[tuple]:
    return sorted(
        (str(period), measure, tuple(sorted(dims.items())), None if value is None else round(value, 6))
        for period, measure, dims, value in rows
    )


def differences(platform: Platform, client: Any, connection: Any) -> list[str]:
    """Every stored (metric, partition) whose values differ from a fresh computation of its metric."""
    batches: dict[str, list[str]] = {}
    for batch in platform.metric_store.batches(connection.id):
        batches.setdefault(batch["metric"], []).append(batch["partition_key"])
    wrong = []
    for name, keys in sorted(batches.items()):
        metric = METRICS[name]
        days = sorted(date.fromisoformat(key.split("|")[1]) for key in keys if "|" in key)
        rows = (
            metric.compute(client, connection, days[0], days[-1]).rows
            if metric.daily
            else metric.compute(client, connection, None, None).rows
        )
        for key in keys:
            day = date.fromisoformat(key.split("|")[1]) if "|" in key else None
            expected = values(
                (r.period, r.measure, r.dimension_dict, r.value) for r in rows if not metric.daily or r.period == day
            )
            got = values(
                (r["period"], r["measure"], r["dimensions"], r["value"])
                for r in platform.metric_store.read(connection_id=connection.id, metric=name, partition_key=key)
            )
            if got != expected:
                wrong.append(f"{name} {key}")
    return wrong


class Mutator:
    def __init__(self, site: JiraSite, rng: random.Random, first: date):
        self.site, self.rng, self.first = site, rng, first
        self.log: list[str] = []

    def issue(self, *statuses: str, recent: bool = False) -> Any:
        """A random issue in one of these statuses; `recent`: whose status category changed within the
        window (reopening an issue done two years ago moves two years of WIP: right, but slow to run)."""
        since = datetime.combine(self.first, time(0), tzinfo=UTC).timestamp()
        found = [
            r
            for r in self.site.issues_in_projects(*SOFTWARE)
            if r.status_id in statuses and (not recent or r.status_changed >= since)
        ]
        return self.rng.choice(found) if found else None

    def apply(self) -> None:
        kind = self.rng.choice(("commit", "close", "reopen", "reopen", "backlog", "create", "worklog", "points"))
        record = None
        if kind == "commit":
            record = self.issue("10000", "10001")
            if record:
                self.site.update_issue(self.site.key_of(record), status=self.rng.choice(("In Progress", "In Review")))
        elif kind == "close":
            record = self.issue("10000", "10001", "3", "10002")
            if record:
                self.site.update_issue(self.site.key_of(record), status="Done")
        elif kind == "reopen":  # clears the resolution: the old resolved and done days lose it
            record = self.issue("10003", recent=True)
            if record:
                self.site.update_issue(
                    self.site.key_of(record), status=self.rng.choice(("In Progress", "Selected for Development"))
                )
        elif kind == "backlog":
            record = self.issue("3", "10002", "10003", recent=True)
            if record:
                self.site.update_issue(self.site.key_of(record), status="Backlog")
        elif kind == "create":
            record = self.site.create_issue(self.rng.choice(SOFTWARE), issuetype=self.rng.choice(("Story", "Bug")))
        elif kind == "worklog":
            record = self.issue("3", "10002", "10003")
            if record:
                started = self.site.now - timedelta(
                    days=self.rng.randrange(0, WINDOW_DAYS), hours=self.rng.randrange(24)
                )
                self.site.add_worklog(
                    self.site.key_of(record), self.rng.randrange(900, 4 * 3600, 300), started=started.timestamp()
                )
        else:
            record = self.issue("10000", "10001", "3", "10002")
            if record:
                self.site.update_issue(self.site.key_of(record), points=self.rng.choice((None, 1.0, 3.0, 8.0)))
        self.log.append(f"{kind} {self.site.key_of(record) if record else '-'}")


def test_sync_leaves_every_value_equal_to_a_full_recompute(platform: Platform, workspace: Any) -> None:
    with make_sandbox("cloud", issues=ISSUES) as cloud, dg.instance_for_test() as instance:
        site = cloud.site
        site.advance(timedelta(hours=1))  # nothing generated changed within the lookback
        connection = connect_cloud(platform, cloud)
        sync_partitions(instance, platform.registry, ["jira"])
        resource = resource_for(cloud)
        materialize = Materializer(platform, resource, instance)
        resources = {
            "platform": PlatformResource(
                home=str(platform.settings.home), metrics_db_url=platform.settings.metrics_db_url
            ),
            "jira": resource,
        }

        today = site.now.date()
        first = today - timedelta(days=WINDOW_DAYS - 1)
        assert materialize(DAILY, tags=range_tags(connection.id, first, today)).success
        assert materialize(SNAPSHOT, partition_key=connection.id).success
        client = resource.client(platform, connection)
        assert differences(platform, client, connection) == []

        with dg.build_sensor_context(instance=instance, cursor=None, resources=resources) as context:
            cursor = jira_sync_sensor(context).cursor  # the first tick: a full resync we already did
        rng = random.Random(SEED)
        mutator = Mutator(site, rng, first)
        runs = 0
        for batch in range(BATCHES):
            for _ in range(CHANGES_PER_BATCH):
                site.advance(timedelta(minutes=rng.randrange(5, 150)))  # changes straddle day boundaries
                mutator.apply()
            site.advance(timedelta(minutes=2))

            faults = cloud.faults
            faults.inject("rate_limit", count=None, probability=0.05, retry_after=0, path_prefix="/ex/jira/")
            faults.inject("server_error", count=None, probability=0.05, status=503, path_prefix="/ex/jira/")
            faults.inject("drop", count=None, probability=0.03, path_prefix="/ex/jira/")
            with dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources) as context:
                result = jira_sync_sensor(context)
            assert all(r.tags["dfx/sync"] == "incremental" for r in result.run_requests)
            for request in result.run_requests:
                names = sorted(key.path[-1] for key in request.asset_selection or [])
                assert materialize(names, partition_key=request.partition_key, tags=request.tags).success
                runs += 1
            cursor = result.cursor
            faults.clear()

            wrong = differences(platform, resource.client(platform, connection), connection)
            assert wrong == [], f"after batch {batch} ({'; '.join(mutator.log[-CHANGES_PER_BATCH:])}): {wrong}"
        assert runs > 0 and sum(not entry.endswith(" -") for entry in mutator.log) >= BATCHES * CHANGES_PER_BATCH // 2
