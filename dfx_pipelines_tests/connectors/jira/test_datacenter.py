"""The Data Center path end to end: personal-access-token connection, `/rest/api/2/search` paged with
startAt, embedded changelogs, Epic Link and Sprint as Data Center renders them — and the same metric
values as the independent computation over the site (and so as Cloud)."""

import pytest

from dfx_pipelines.platform.registry import Workspace

from . import expected
from .conftest import Materializer, connect_datacenter, make_sandbox, resource_for, stored


def test_datacenter_metrics_match_the_site(platform, workspace: Workspace, dagster_instance) -> None:
    with make_sandbox("datacenter") as datacenter:
        connection = connect_datacenter(platform, datacenter)
        result = Materializer(platform, resource_for(datacenter), dagster_instance)(
            ["issue_count", "cycle_time_days", "sprint_velocity"], partition_key=connection.id
        )
        assert result.success
        site = datacenter.site
        counts = stored(platform, "jira-dc", "issue_count")
        for dims, count in expected.issue_counts(site, ("ALPHA", "BETA", "OPS")).items():
            assert counts[(None, "issues", (dims,) if dims else ())] == count, dims
        cycle = stored(platform, "jira-dc", "cycle_time_days")
        for measure, value in expected.cycle_time_summary(site, "ALPHA")[""].items():
            assert cycle[(None, measure, (("board_id", "1"),))] == pytest.approx(value)
        velocity = {
            (dict(dims)["sprint_id"], measure): v
            for (_, measure, dims), v in stored(platform, "jira-dc", "sprint_velocity").items()
        }
        for sprint_id, (committed, completed) in expected.velocity(site, 1).items():
            assert (
                velocity[(sprint_id, "committed_points")],
                velocity[(sprint_id, "completed_points")],
            ) == pytest.approx((committed, completed))
        searches = [r for r in datacenter.app.field_requests if r.route.endswith("/rest/api/2/search")]
        assert len(searches) > 3 and all(r.fields and "description" not in r.fields for r in searches)
        assert {r.expand for r in searches} == {(), ("changelog",)}  # counts need no history; flow and velocity do
        assert datacenter.app.calls["POST api/search"] == len(searches)
