"""`worklog_hours` reads worklogs from its search results (Jira embeds an issue's first 20 with their true
total) and asks an issue for its own only when it has more — on Cloud and Data Center alike — with the same
values as the independent computation, and worklog comments, which cross the wire either way, in no store."""

from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pytest
import requests

from dfx_pipelines.connectors.jira import query
from dfx_pipelines.connectors.jira.resource import JiraResource
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.records import jira_time
from dfx_pipelines.platform.registry import Workspace

from . import expected
from .conftest import Materializer, connect_cloud, connect_datacenter, make_sandbox, range_tags, resource_for, stored

LAST = date(2025, 6, 2)  # the sandbox site's clock (generate.DEFAULT_NOW)
FIRST = LAST - timedelta(days=6)
DAYS = [FIRST + timedelta(days=n) for n in range(7)]
PROJECTS = ("ALPHA", "BETA", "OPS")
EMBEDDED = 20  # worklogs Jira embeds in a search result's `worklog` field


SEEN: list[tuple[str, bytes]] = []  # (path, body) of every response the spying resource received


class SpyingJiraResource(JiraResource):
    """The real resource, keeping every response body the connector received (in `SEEN`: Dagster runs a
    copy of the resource it is given)."""

    def session(self, platform):
        session = super().session(platform)
        session.hooks["response"].append(
            lambda response, **_: SEEN.append((requests.utils.urlparse(response.url).path, response.content))
        )
        return session


def log_work_until(site: JiraSite, record, count: int) -> None:
    """Give `record` `count` worklogs in all, started 12 hours apart up to an hour ago: the last ones (those
    search leaves out) inside the metric's days, the first ones before them, so the day filter matters."""
    for n in range(len(site.worklogs(record)), count):
        site.add_worklog(site.key_of(record), 1800 + 60 * n, started=site.now_epoch - 3600 - (count - 1 - n) * 43200)


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_only_an_issue_with_more_worklogs_than_search_embeds_costs_a_worklog_call(
    platform, workspace: Workspace, dagster_instance, flavour
) -> None:
    with make_sandbox(flavour) as sandbox:
        site = sandbox.site
        busy, full = expected.issues(site, "ALPHA")[:2]
        log_work_until(site, busy, EMBEDDED + 5)
        log_work_until(site, full, EMBEDDED)  # exactly what search embeds: complete, no call needed
        assert max(len(site.worklogs(r)) for r in site.issues if r not in (busy, full)) <= EMBEDDED
        connection = (connect_cloud if flavour == "cloud" else connect_datacenter)(platform, sandbox)
        resource = SpyingJiraResource(**resource_for(sandbox).model_dump())
        SEEN.clear()
        since = len(sandbox.requests)
        result = Materializer(platform, resource, dagster_instance)(
            ["worklog_hours"], tags=range_tags(connection.id, FIRST, LAST)
        )
        assert result.success

        asked = [
            request.path.split("/")[-2] for request in sandbox.requests[since:] if request.path.endswith("/worklog")
        ]
        assert asked == [str(busy.id)]
        searches = [
            r
            for r in sandbox.app.field_requests
            if r.route.endswith(("/search/jql", "/search")) and "worklog" in r.fields
        ]
        assert searches, "worklog_hours asked search for the worklog field"

        want = expected.worklog_hours(site, PROJECTS, DAYS)
        assert any(day in DAYS for day in map(expected.day, (w.started for w in site.worklogs(busy)[EMBEDDED:])))
        assert any(
            day < FIRST for day in map(expected.day, (w.started for w in site.worklogs(busy)))
        )  # the filter matters
        values = stored(platform, connection.id, "worklog_hours")
        assert values == {(d, "hours", dims): pytest.approx(v) for (d, dims), v in want.items()}

        # Records read: every issue found (updated since the first day, with a worklog started in the range
        # widened by a day each side: `worklogDate`), every worklog search embedded, and the busy issue's
        # own call.
        since_first = datetime.combine(FIRST, time(0), tzinfo=UTC).timestamp()
        window = (since_first - 86400, datetime.combine(LAST, time(0), tzinfo=UTC).timestamp() + 2 * 86400)
        found = [
            r
            for r in expected.issues(site, *PROJECTS)
            if r.updated >= since_first and any(window[0] <= w.started < window[1] for w in site.worklogs(r))
        ]
        assert len(found) < sum(r.updated >= since_first for r in expected.issues(site, *PROJECTS))
        # What was read is shown on the range's first partition, where the metric store counts it.
        metadata = next(
            e.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.partition == f"{connection.id}|{FIRST}"
        )
        assert metadata["issues_checked"].value == str(len(found))
        embedded = sum(min(EMBEDDED, len(site.worklogs(r))) for r in found)
        assert metadata["records_read"].value == len(found) + embedded + len(site.worklogs(busy))

        # Worklog comments crossed the wire, embedded in search and from the busy issue's call; none was kept.
        canary = site.worklog_canary.encode()
        assert {path.rsplit("/", 1)[-1] for path, body in SEEN if canary in body} == {
            "jql" if flavour == "cloud" else "search",
            "worklog",
        }
        assert files_containing(platform.settings.home, canary) == []
        assert files_containing(Path(dagster_instance.root_directory), canary) == []


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_search_keeps_embedded_worklogs_only_reduced_and_only_when_complete(
    platform, workspace: Workspace, flavour
) -> None:
    """The store check above cannot see what the client holds in memory: here, no comment (canary) and
    no `worklog` field survives a search page, and an issue with more than embedded is left to its call."""
    with make_sandbox(flavour) as sandbox:
        site = sandbox.site
        alpha = expected.issues(site, "ALPHA")
        busy = alpha[0]
        log_work_until(site, busy, EMBEDDED + 1)
        connection = (connect_cloud if flavour == "cloud" else connect_datacenter)(platform, sandbox)
        client = resource_for(sandbox).client(platform, connection)
        pages = list(client.search(query.issues_jql(["ALPHA"]), query.worklog_plan(connection)))

        issues = [issue for page in pages for issue in page.issues]
        assert {issue["id"] for issue in issues} == {str(r.id) for r in alpha}
        assert site.worklog_canary not in repr([(page.issues, page.worklogs) for page in pages])
        assert not any("worklog" in issue["fields"] for issue in issues)
        worklogs = {issue_id: found for page in pages for issue_id, found in page.worklogs.items()}
        assert worklogs == {
            str(r.id): [
                {
                    "issueId": str(r.id),
                    "started": jira_time(w.started),
                    "timeSpentSeconds": w.seconds,
                    "updated": jira_time(w.updated),
                }
                for w in site.worklogs(r)
            ]
            for r in alpha
            if r is not busy
        }
        assert any(worklogs.values()), "some issue had worklogs to embed"
        assert client.records_read == len(issues) + sum(min(EMBEDDED, len(site.worklogs(r))) for r in alpha)
