"""The sandbox site's fixed vocabulary: status categories, statuses, workflows, issue types, priorities, fields."""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------- status categories and statuses


@dataclass(frozen=True)
class StatusCategory:
    id: int
    key: str  # stable, not localised: "new", "indeterminate", "done"
    name: str
    color: str


CATEGORY_TODO = StatusCategory(2, "new", "To Do", "blue-gray")
CATEGORY_IN_PROGRESS = StatusCategory(4, "indeterminate", "In Progress", "yellow")
CATEGORY_DONE = StatusCategory(3, "done", "Done", "green")
STATUS_CATEGORIES = (CATEGORY_TODO, CATEGORY_IN_PROGRESS, CATEGORY_DONE)


@dataclass(frozen=True)
class Status:
    id: str
    name: str
    category: StatusCategory


BACKLOG = Status("10000", "Backlog", CATEGORY_TODO)
SELECTED = Status("10001", "Selected for Development", CATEGORY_TODO)
IN_PROGRESS = Status("3", "In Progress", CATEGORY_IN_PROGRESS)
IN_REVIEW = Status("10002", "In Review", CATEGORY_IN_PROGRESS)
DONE = Status("10003", "Done", CATEGORY_DONE)
WAITING_FOR_SUPPORT = Status("10004", "Waiting for support", CATEGORY_TODO)
WAITING_FOR_CUSTOMER = Status("10005", "Waiting for customer", CATEGORY_IN_PROGRESS)
RESOLVED = Status("10006", "Resolved", CATEGORY_DONE)

STATUSES = (BACKLOG, SELECTED, IN_PROGRESS, IN_REVIEW, DONE, WAITING_FOR_SUPPORT, WAITING_FOR_CUSTOMER, RESOLVED)
STATUS_BY_ID = {status.id: status for status in STATUSES}

# Workflows in forward order; the generator walks them with skips and backward moves.
SOFTWARE_WORKFLOW = (BACKLOG, SELECTED, IN_PROGRESS, IN_REVIEW, DONE)
SERVICE_WORKFLOW = (WAITING_FOR_SUPPORT, IN_PROGRESS, WAITING_FOR_CUSTOMER, RESOLVED)

# Board columns: (column name, statuses). Column names are what the flow reducers call stages.
SOFTWARE_COLUMNS = (
    ("Backlog", (BACKLOG,)),
    ("Selected for Development", (SELECTED,)),
    ("In Progress", (IN_PROGRESS,)),
    ("In Review", (IN_REVIEW,)),
    ("Done", (DONE,)),
)


@dataclass(frozen=True)
class Resolution:
    id: str
    name: str


RESOLUTION_DONE = Resolution("10000", "Done")
RESOLUTION_WONT_DO = Resolution("10001", "Won't Do")
RESOLUTIONS = (RESOLUTION_DONE, RESOLUTION_WONT_DO)

# ---------------------------------------------------------------- issue types and priorities


@dataclass(frozen=True)
class IssueType:
    id: str
    name: str
    hierarchy_level: int  # 1 epic, 0 standard, -1 sub-task
    subtask: bool = False


EPIC = IssueType("10000", "Epic", 1)
STORY = IssueType("10001", "Story", 0)
TASK = IssueType("10002", "Task", 0)
BUG = IssueType("10003", "Bug", 0)
SUBTASK = IssueType("10004", "Sub-task", -1, subtask=True)
SERVICE_REQUEST = IssueType("10005", "Service Request", 0)
ISSUE_TYPES = (EPIC, STORY, TASK, BUG, SUBTASK, SERVICE_REQUEST)


@dataclass(frozen=True)
class Priority:
    id: str
    name: str


PRIORITIES = (
    Priority("1", "Highest"),
    Priority("2", "High"),
    Priority("3", "Medium"),
    Priority("4", "Low"),
    Priority("5", "Lowest"),
)

# ---------------------------------------------------------------- projects, people, teams


@dataclass(frozen=True)
class ProjectSpec:
    id: str
    key: str
    name: str
    type_key: str  # "software" | "service_desk"
    components: tuple[str, ...]
    board: tuple[int, str, str] | None  # (board id, board name, "scrum" | "kanban")
    weight: int  # share of generated issues


PROJECTS = (
    ProjectSpec(
        "10000", "ALPHA", "Alpha Platform", "software", ("API", "Frontend", "Billing"), (1, "ALPHA board", "scrum"), 40
    ),
    ProjectSpec(
        "10001", "BETA", "Beta Mobile", "software", ("iOS", "Android", "Backend"), (2, "BETA board", "kanban"), 25
    ),
    ProjectSpec("10002", "GAMMA", "Gamma Data", "software", ("Ingest", "Warehouse"), (3, "GAMMA board", "scrum"), 15),
    ProjectSpec("10003", "OPS", "Ops Service Desk", "service_desk", ("Access", "Hardware", "Network"), None, 20),
)

USERS = (
    ("5b10a2844c20165700ede21g", "Mia Krystof", "mia"),
    ("5b10ac8d82e05b22cc7d4ef5", "Ravi Anand", "ravi"),
    ("5c4f1f0e5d6b3e1d2c3b4a59", "Jo Weber", "jo"),
    ("5d2a9e4f1b0c8d7e6f5a4b32", "Ana Lima", "ana"),
    ("5e7b3c2d1a0f9e8d7c6b5a41", "Sam Okafor", "sam"),
    ("5f8c4d3e2b1a0f9e8d7c6b50", "Lee Chen", "lee"),
)
SANDBOX_USER = USERS[0]  # the account every credential authenticates as

TEAMS = (
    ("36885b3c-1bf0-4f85-a357-c5b858c31de4", "Platform Team"),
    ("4a7c2e1d-2b3f-4c5d-8e9f-0a1b2c3d4e5f", "Mobile Team"),
    ("5b8d3f2e-3c4a-4d6e-9f0a-1b2c3d4e5f60", "Data Team"),
)
CUSTOMER_TIERS = (("10100", "Gold"), ("10101", "Silver"), ("10102", "Bronze"))
LABELS = ("backend", "ux", "tech-debt", "customer", "security")

# ---------------------------------------------------------------- fields


@dataclass(frozen=True)
class FieldSpec:
    id: str
    name: str
    schema_type: str
    system: str | None = None  # schema.system for built-in fields
    custom: str | None = None  # schema.custom plugin key for custom fields
    items: str | None = None
    clause_names: tuple[str, ...] = ()
    navigable: bool = True
    orderable: bool = True
    searchable: bool = True
    cloud_name: str | None = None  # name on Cloud when it differs from Data Center's

    @property
    def is_custom(self) -> bool:
        return self.custom is not None

    @property
    def custom_id(self) -> int | None:
        return int(self.id.split("_")[1]) if self.is_custom else None

    def display_name(self, cloud: bool) -> str:
        return self.cloud_name if cloud and self.cloud_name else self.name


STORY_POINTS_FIELD = "customfield_10016"
TEAM_FIELD = "customfield_10001"
SPRINT_FIELD = "customfield_10020"
EPIC_LINK_FIELD = "customfield_10014"
CUSTOMER_TIER_FIELD = "customfield_10030"
# Jira Service Management keeps each SLA in a custom field of this type; search returns its value (the
# same SLA object `/rest/servicedeskapi/request/{key}/sla` lists) when the field is named in `fields`.
SLA_PLUGIN = "com.atlassian.servicedesk:sd-sla-field"
FIRST_RESPONSE_SLA_FIELD = "customfield_10040"
RESOLUTION_SLA_FIELD = "customfield_10041"

FIELDS = (
    FieldSpec("summary", "Summary", "string", system="summary", clause_names=("summary",)),
    FieldSpec("issuetype", "Issue Type", "issuetype", system="issuetype", clause_names=("issuetype", "type")),
    FieldSpec("project", "Project", "project", system="project", clause_names=("project",)),
    FieldSpec("status", "Status", "status", system="status", clause_names=("status",)),
    FieldSpec(
        "statuscategorychangedate",
        "Status Category Changed",
        "datetime",
        system="statuscategorychangedate",
        clause_names=("statusCategoryChangedDate",),
    ),
    FieldSpec("priority", "Priority", "priority", system="priority", clause_names=("priority",)),
    FieldSpec("resolution", "Resolution", "resolution", system="resolution", clause_names=("resolution",)),
    FieldSpec(
        "resolutiondate", "Resolved", "datetime", system="resolutiondate", clause_names=("resolutiondate", "resolved")
    ),
    FieldSpec("created", "Created", "datetime", system="created", clause_names=("created", "createdDate")),
    FieldSpec("updated", "Updated", "datetime", system="updated", clause_names=("updated", "updatedDate")),
    FieldSpec("assignee", "Assignee", "user", system="assignee", clause_names=("assignee",)),
    FieldSpec("reporter", "Reporter", "user", system="reporter", clause_names=("reporter",)),
    FieldSpec("labels", "Labels", "array", system="labels", items="string", clause_names=("labels",)),
    FieldSpec("components", "Components", "array", system="components", items="component", clause_names=("component",)),
    FieldSpec("parent", "Parent", "issuelink", system="parent", clause_names=("parent",)),
    FieldSpec(
        "subtasks",
        "Sub-tasks",
        "array",
        system="subtasks",
        items="issuelinks",
        clause_names=("subtasks",),
        orderable=False,
    ),
    FieldSpec("description", "Description", "string", system="description", clause_names=("description",)),
    FieldSpec("comment", "Comment", "comments-page", system="comment", clause_names=("comment",), navigable=False),
    FieldSpec(
        "attachment", "Attachment", "array", system="attachment", items="attachment", clause_names=("attachments",)
    ),
    FieldSpec(
        "worklog",
        "Log Work",
        "array",
        system="worklog",
        items="worklog",
        clause_names=("worklogAuthor",),
        navigable=False,
    ),
    FieldSpec(
        STORY_POINTS_FIELD,
        "Story Points",
        "number",
        custom="com.atlassian.jira.plugin.system.customfieldtypes:float",
        clause_names=("cf[10016]", "Story point estimate"),
        cloud_name="Story point estimate",
    ),
    FieldSpec(
        TEAM_FIELD,
        "Team",
        "team",
        custom="com.atlassian.jira.plugin.system.customfieldtypes:atlassian-team",
        clause_names=("cf[10001]", "Team"),
    ),
    FieldSpec(
        SPRINT_FIELD,
        "Sprint",
        "array",
        custom="com.pyxis.greenhopper.jira:gh-sprint",
        items="json",
        clause_names=("cf[10020]", "Sprint", "sprint"),
    ),
    FieldSpec(
        EPIC_LINK_FIELD,
        "Epic Link",
        "any",
        custom="com.pyxis.greenhopper.jira:gh-epic-link",
        clause_names=("cf[10014]", "Epic Link"),
    ),
    FieldSpec(
        CUSTOMER_TIER_FIELD,
        "Customer Tier",
        "option",
        custom="com.atlassian.jira.plugin.system.customfieldtypes:select",
        clause_names=("cf[10030]", "Customer Tier"),
    ),
    FieldSpec(
        FIRST_RESPONSE_SLA_FIELD,
        "Time to first response",
        "sd-servicelevelagreement",
        custom=SLA_PLUGIN,
        clause_names=("cf[10040]", "Time to first response"),
    ),
    FieldSpec(
        RESOLUTION_SLA_FIELD,
        "Time to resolution",
        "sd-servicelevelagreement",
        custom=SLA_PLUGIN,
        clause_names=("cf[10041]", "Time to resolution"),
    ),
)
FIELD_BY_ID = {spec.id: spec for spec in FIELDS}
