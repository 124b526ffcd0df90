"""The privacy promise end to end — the canary planted in every description, comment and attachment never
crosses the wire and appears in no store; worklog comments, which Jira cannot leave out (embedded in search
or from an issue's worklog call), are dropped on arrival — and a sync under 429s, 5xx and dropped
connections ends with the same metrics as a clean run."""

import logging
from datetime import date
from pathlib import Path

import requests

from dfx_pipelines.connectors.jira.compute import METRICS
from dfx_pipelines.connectors.jira.resource import JiraResource

from .conftest import Materializer, range_tags, resource_for, stored

FORBIDDEN_FIELDS = {"description", "comment", "attachment", "*all", "*navigable", "summary", "environment"}
WORKLOG_FIELD = "worklog"  # only in worklog_hours' searches: the client reduces it on arrival
SEEN: list[tuple[str, bytes]] = []  # (path, body) of every response the spying resource received


class SpyingJiraResource(JiraResource):
    """The real resource, with a response hook that keeps every body the connector received."""

    def session(self, platform):
        session = super().session(platform)
        session.hooks["response"].append(
            lambda response, **_: SEEN.append((requests.utils.urlparse(response.url).path, response.content))
        )
        return session


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [path for path in root.rglob("*") if path.is_file() and needle in path.read_bytes()]


def test_the_canary_never_crosses_the_wire_and_is_in_no_store(
    platform, cloud_connection, jira_cloud, dagster_instance, caplog
) -> None:
    site = jira_cloud.site
    SEEN.clear()
    resource = SpyingJiraResource(**resource_for(jira_cloud).model_dump())
    materialize = Materializer(platform, resource, dagster_instance)
    with caplog.at_level(logging.DEBUG):
        assert materialize([n for n, m in METRICS.items() if not m.daily], partition_key=cloud_connection.id).success
        assert materialize(
            [n for n, m in METRICS.items() if m.daily],
            tags=range_tags(cloud_connection.id, date(2025, 6, 1), date(2025, 6, 2)),
        ).success
    assert len(SEEN) > 50 and len(platform.metric_store.read(connection_id=cloud_connection.id)) > 100
    # Descriptions, comments and attachments were never fetched: no response body holds their canary.
    assert [path for path, body in SEEN if site.canary.encode() in body] == []
    # Worklog comments come with every worklog (Jira has no field selection there), here embedded in
    # worklog_hours' searches (no issue of this site has more than search embeds), and are dropped.
    assert {path.rsplit("/", 1)[-1] for path, body in SEEN if site.worklog_canary.encode() in body} == {"jql"}
    for canary in (site.canary, site.worklog_canary):
        assert files_containing(platform.settings.home, canary.encode()) == []  # metric DB, vault, locks
        assert (
            files_containing(Path(dagster_instance.root_directory), canary.encode()) == []
        )  # runs, events, compute logs
        assert canary not in caplog.text
    # Every request named its fields, and none of them reads text a person wrote.
    requests_made = jira_cloud.app.field_requests
    assert requests_made and all(r.fields for r in requests_made)
    assert not any(set(r.fields) & FORBIDDEN_FIELDS for r in requests_made)
    worklog_hours_fields = {r.fields for r in requests_made if WORKLOG_FIELD in r.fields}
    assert len(worklog_hours_fields) == 1 and all(
        r.route.endswith("/search/jql") for r in requests_made if WORKLOG_FIELD in r.fields
    )
    assert not any(f.startswith(("*", "-")) for r in requests_made for f in r.fields)
    assert all(r.expand == () for r in requests_made), "Cloud changelogs come from bulkfetch, never embedded"


def test_faults_give_the_same_metrics_as_a_clean_run(platform, cloud_connection, jira_cloud, dagster_instance) -> None:
    metrics = ["issue_count", "cycle_time_days", "sla_status"]
    materialize = Materializer(platform, resource_for(jira_cloud), dagster_instance)
    assert materialize(metrics, partition_key=cloud_connection.id).success
    clean = {metric: stored(platform, cloud_connection.id, metric) for metric in metrics}
    platform.metric_store.delete_connection(cloud_connection.id)
    faults, api = jira_cloud.faults, f"/ex/jira/{jira_cloud.cloud_id}/rest"
    # Spread over different calls (each backs off a little, longer with every attempt); the sandbox
    # applies the first matching rule not yet spent, so specific paths come first.
    faults.inject("rate_limit", count=1, retry_after=1, path_prefix=f"{api}/agile/1.0/board/1/configuration")
    faults.inject("server_error", count=1, status=503, path_prefix=f"{api}/api/3/status")
    faults.inject("server_error", count=1, status=500, path_prefix=f"{api}/api/3/search")
    faults.inject("drop", count=2, path_prefix=f"{api}/api/3/changelog")
    faults.inject("drop", count=1, path_prefix=f"{api}/servicedeskapi")
    faults.inject("server_error", count=1, status=502, path_prefix=f"{api}/servicedeskapi")
    faults.inject("expire_token", count=1, path_prefix=f"{api}/api/3/search")
    result = materialize(metrics, partition_key=cloud_connection.id)
    assert result.success
    assert {kind for kind, _ in faults.log} == {"rate_limit", "server_error", "drop", "expire_token"} and len(
        faults.log
    ) == 8
    assert {metric: stored(platform, cloud_connection.id, metric) for metric in metrics} == clean
    calls = sum(e.materialization.metadata["api_calls"].value for e in result.get_asset_materialization_events())
    assert calls >= 8 + 3  # the retries are counted as API calls
