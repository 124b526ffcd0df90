"""The Jira connector's pure metric reducers, in one import: flow metrics as jira-agile-metrics computes
them (`metrics_flow`), sprint velocity as dbt_jira frames it (`metrics_sprints`), and issue, worklog and
SLA counts (`metrics_counts`), with the readers they share (`metrics_common`). Adapters turn Jira's JSON
into compact per-issue facts; reducers turn those into `MetricRow`s. No I/O, no Dagster, no client library:
raw issue JSON is read once and dropped, and descriptions and comments are never read."""

from __future__ import annotations

from dfx_pipelines.connectors.jira.metrics_common import (
    JiraDataError,
    Timeline,
    change_histories,
    days_in_range,
    parse_jira_timestamp,
    utc_day,
)
from dfx_pipelines.connectors.jira.metrics_counts import (
    BUILT_IN_DIMENSIONS,
    IssueAttributes,
    created_vs_resolved_rows,
    issue_attributes,
    issue_count_rows,
    issue_count_rows_of,
    open_dimension_values,
    sla_status_rows,
    worklog_hours_rows,
)
from dfx_pipelines.connectors.jira.metrics_flow import (
    CycleTimeRecord,
    FlowTallies,
    IssueStatusHistory,
    Stage,
    StatusChange,
    Workflow,
    cycle_time_record,
    cycle_time_rows,
    cycle_times,
    issue_status_history,
    linear_percentile,
    stage_count_rows,
    stage_of,
    throughput_rows,
    wip_rows,
    workflow_from_board_configuration,
    workflow_from_config,
)
from dfx_pipelines.connectors.jira.metrics_sprints import (
    Sprint,
    SprintIssueHistory,
    done_status_ids_from_statuses,
    sprint_from_json,
    sprint_issue_history,
    sprint_velocity_rows,
)

__all__ = [
    "BUILT_IN_DIMENSIONS",
    "CycleTimeRecord",
    "FlowTallies",
    "IssueAttributes",
    "IssueStatusHistory",
    "JiraDataError",
    "Sprint",
    "SprintIssueHistory",
    "Stage",
    "StatusChange",
    "Timeline",
    "Workflow",
    "change_histories",
    "created_vs_resolved_rows",
    "cycle_time_record",
    "cycle_time_rows",
    "cycle_times",
    "days_in_range",
    "done_status_ids_from_statuses",
    "issue_attributes",
    "issue_count_rows",
    "issue_count_rows_of",
    "issue_status_history",
    "linear_percentile",
    "open_dimension_values",
    "parse_jira_timestamp",
    "sla_status_rows",
    "sprint_from_json",
    "sprint_issue_history",
    "sprint_velocity_rows",
    "stage_count_rows",
    "stage_of",
    "throughput_rows",
    "utc_day",
    "wip_rows",
    "workflow_from_board_configuration",
    "workflow_from_config",
    "worklog_hours_rows",
]
