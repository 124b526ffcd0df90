"""Agile endpoints of the sandbox: boards, configuration, sprints, sprint issues, epics; hidden projects."""

from __future__ import annotations

from dfx_pipelines.connectors.jira import metrics_sprints
from dfx_pipelines.connectors.jira.metrics_flow import workflow_from_board_configuration
from dfx_pipelines.connectors.jira.sandbox import catalog
from dfx_pipelines.connectors.jira.sandbox.generate import JiraSite
from dfx_pipelines.connectors.jira.sandbox.server import start_jira_sandbox
from dfx_pipelines_tests.connectors.jira.sandbox.conftest import http


def test_boards_filter_and_page(cloud, cloud_jira, cloud_http):
    assert [(b.id, b.type) for b in cloud_jira.boards()] == [(1, "scrum"), (2, "kanban"), (3, "scrum")]
    assert [b.id for b in cloud_jira.boards(projectKeyOrID="BETA")] == [2]
    page = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board", params={"maxResults": 2}).json()
    assert (page["total"], page["isLast"], len(page["values"])) == (3, False, 2)


def test_board_configuration_maps_columns_to_status_ids(cloud, cloud_http):
    config = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board/1/configuration").json()
    assert config["estimation"]["field"] == {"fieldId": "customfield_10016", "displayName": "Story point estimate"}
    workflow = workflow_from_board_configuration(config, "In Progress", "Done")
    assert workflow.stage_index(catalog.IN_REVIEW.id, None) == 3
    assert [c["name"] for c in config["columnConfig"]["columns"]] == [name for name, _ in catalog.SOFTWARE_COLUMNS]
    kanban = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board/2/configuration").json()
    assert kanban["type"] == "kanban" and "estimation" not in kanban


def test_sprints_by_state_and_kanban_refusal(cloud, cloud_jira, cloud_http):
    sprints = cloud_jira.sprints(1)
    states = [s.state for s in sprints]
    assert states == sorted(states, key=["closed", "active", "future"].index) and states.count("active") == 1
    assert len(sprints) == sum(1 for s in cloud.site.sprints if s.board_id == 1)
    future = cloud_jira.sprints(1, state="future")
    assert future and all(not hasattr(s, "startDate") for s in future)
    refused = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board/2/sprint")
    assert refused.status_code == 400 and refused.json()["errorMessages"] == ["The board does not support sprints"]


def test_sprint_issues_with_fields_feed_the_velocity_reducer(cloud, cloud_http):
    site = cloud.site
    closed = [s for s in site.sprints if s.board_id == 1 and s.state == "closed"][-1]
    url = f"{cloud.url}/rest/agile/1.0/sprint/{closed.id}/issue"
    wanted = "created,status,resolution,customfield_10020,customfield_10016"
    page = cloud_http.get(url, params={"fields": wanted, "maxResults": 100}).json()
    assert page["total"] == sum(1 for r in site.issues if closed.id in r.sprints) == len(page["issues"])
    assert all(set(i["fields"]) == set(wanted.split(",")) for i in page["issues"])
    assert site.canary not in str(page)
    assert (
        site.canary in http(cloud, (cloud.email, cloud.api_token)).get(url, params={"maxResults": 2}).text
    )  # default: navigable fields
    sprint_json = cloud_http.get(f"{cloud.url}/rest/agile/1.0/sprint/{closed.id}").json()
    done_ids = metrics_sprints.done_status_ids_from_statuses(cloud_http.get(f"{cloud.url}/rest/api/3/status").json())
    histories = []
    for issue in page["issues"]:
        values = cloud_http.get(f"{cloud.url}/rest/api/3/issue/{issue['id']}/changelog").json()["values"]
        histories.append(metrics_sprints.sprint_issue_history(
            issue, sprint_field_id="customfield_10020", story_points_field_id="customfield_10016",
            done_status_ids=done_ids, histories=values,
        ))  # fmt: skip
    rows = metrics_sprints.sprint_velocity_rows(histories, [metrics_sprints.sprint_from_json(sprint_json)])
    measures = {row.measure: row.value for row in rows}
    assert (
        measures["final_issues"] == len(page["issues"])
        and measures["committed_issues"] + measures["added_issues"] >= measures["final_issues"]
    )


def test_epics_of_a_board(cloud, cloud_http):
    values = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board/1/epic").json()["values"]
    expected = [cloud.site.key_of(r) for r in cloud.site.issues_in_projects("ALPHA") if r.type == 0]
    assert [v["key"] for v in values] == expected
    assert all(isinstance(v["done"], bool) and v["color"]["key"].startswith("color_") for v in values)
    done = cloud_http.get(f"{cloud.url}/rest/agile/1.0/board/1/epic", params={"done": "false"}).json()["values"]
    assert all(not v["done"] for v in done)


def test_hidden_projects_do_not_exist_for_the_account():
    with start_jira_sandbox(JiraSite(seed=4, issues=120), hidden_projects=("GAMMA",)) as running:
        session = http(running, (running.email, running.api_token))
        assert session.get(f"{running.url}/rest/api/3/project/GAMMA").status_code == 404
        assert "GAMMA" not in [p["key"] for p in session.get(f"{running.url}/rest/api/3/project").json()]
        board = session.get(f"{running.url}/rest/agile/1.0/board/3/configuration")
        assert board.status_code == 403 and board.json()["errorMessages"]
        assert session.get(f"{running.url}/rest/api/3/search/jql", params={"jql": "project = GAMMA"}).status_code == 400
        gamma = running.site.issues_in_projects("GAMMA")[0]
        assert session.get(f"{running.url}/rest/api/3/issue/{running.site.key_of(gamma)}").status_code == 404
        everything = session.get(
            f"{running.url}/rest/api/3/search/jql", params={"jql": "created >= -400d", "maxResults": 5000}
        ).json()
        assert str(gamma.id) not in {i["id"] for i in everything["issues"]}
