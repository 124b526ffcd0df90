"""Every environment variable the pipeline reads, in one catalogue: which process reads it, its default,
and whether production needs it; and the check behind `dfx doctor`, which reports in one screen what
is missing or inconsistent in an environment.

The README's production table is generated from the same facts and a test holds both against the
variables the code actually reads, so a new variable cannot go undocumented.

Reads only the mapping it is given and, in production, whether DAGSTER_HOME holds a PostgreSQL
`dagster.yaml`; imports no Dagster, connector or database library, so `dfx doctor` runs anywhere.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Who reads a variable. "code location" is every process that loads the definitions: dagster-daemon,
# dagster-webserver, the code server they start and the run workers launched from it (sensors and
# schedules are evaluated there too).
ALL = "all: `dfx`, daemon, webserver, run workers"
LOCATION = "daemon, webserver, run workers"
CLI = "`dfx`"


@dataclass(frozen=True)
class Variable:
    name: str
    read_by: str
    default: str
    production: str  # "yes", "no", or the condition under which it is needed
    what: str


VARIABLES: tuple[Variable, ...] = (
    Variable(
        "DAGSTER_HOME",
        ALL,
        "`dfx`: `$DFX_HOME/dagster_home` (SQLite)",
        "yes",
        "folder holding this repository's `dagster.yaml`",
    ),
    Variable(
        "DAGSTER_PG_HOST",
        ALL,
        "-",
        "yes",
        "Dagster's run, event-log and schedule storage (PostgreSQL), read by `dagster.yaml`",
    ),
    Variable("DAGSTER_PG_PORT", ALL, "-", "yes", "as above"),
    Variable("DAGSTER_PG_USERNAME", ALL, "-", "yes", "as above"),
    Variable("DAGSTER_PG_PASSWORD", ALL, "-", "yes", "as above"),
    Variable("DAGSTER_PG_DB", ALL, "-", "yes", "as above"),
    Variable(
        "DFX_MODE",
        ALL,
        "`embedded`",
        "yes: `production`",
        "`production` refuses sandbox hosts, the sandbox CA and `dfx sandbox serve`",
    ),
    Variable(
        "DFX_HOME",
        ALL,
        "`./.dfx` (the working directory's)",
        "yes",
        "the local folder every process shares (default vault folder, sandbox CA); the same absolute path everywhere",
    ),
    Variable(
        "DFX_METRICS_DB_URL",
        ALL,
        "SQLite in `$DFX_HOME/metrics.db` (embedded only: production refuses to start without it)",
        "yes",
        "the metric database, e.g. `postgresql+psycopg2://dfx@db/dfx` (migrated on first use)",
    ),
    Variable(
        "DFX_MASTER_KEY",
        ALL,
        "generated into `$DFX_HOME/master.key`",
        "yes",
        "base64 of 32 random bytes, or `new:<b64>,old:<b64>` while rotating",
    ),
    Variable(
        "DFX_VAULT_BACKEND",
        ALL,
        "`local`",
        "no",
        "`gcp-secret-manager` keeps the encrypted secrets in Google Secret Manager",
    ),
    Variable(
        "DFX_VAULT_DIR",
        ALL,
        "`$DFX_HOME/vault`",
        "with `local` vault: a folder shared by every process",
        "where the local vault keeps encrypted secrets",
    ),
    Variable("DFX_VAULT_GCP_PROJECT", ALL, "-", "with `gcp-secret-manager`", "the Secret Manager project"),
    Variable(
        "SALESFORCE_CLIENT_ID",
        f"{CLI}, {LOCATION}",
        "the sandbox's app",
        "with Salesforce",
        "the connected app's consumer key (connect, and token refresh in runs)",
    ),
    Variable(
        "SALESFORCE_CLIENT_SECRET",
        f"{CLI}, {LOCATION}",
        "none (PKCE only)",
        "if the connected app has one",
        "the connected app's consumer secret",
    ),
    Variable(
        "JIRA_CLIENT_ID",
        f"{CLI}, {LOCATION}",
        "the sandbox's app",
        "with Jira Cloud OAuth",
        "the Atlassian 3LO app's client id",
    ),
    Variable(
        "JIRA_CLIENT_SECRET",
        f"{CLI}, {LOCATION}",
        "-",
        "with Jira Cloud OAuth",
        "the Atlassian 3LO app's secret (connect, and rotating refresh in runs)",
    ),
    Variable(
        "JIRA_API_TOKEN",
        CLI,
        "a hidden prompt",
        "no",
        "`dfx connect jira --base-url`: the token to store (never an argument)",
    ),
    Variable(
        "DFX_POSTGRES_PASSWORD",
        CLI,
        "a hidden prompt",
        "no",
        "`dfx connect postgres`: the role's password to store (never an argument)",
    ),
    Variable(
        "DFX_PG_BINDIR",
        ALL,
        "the newest `/usr/lib/postgresql/*/bin`, else `PATH`",
        "no",
        "the server binaries (`initdb`, `pg_ctl`) of the PostgreSQL sandbox cluster (demo, tests, benchmark)",
    ),
    Variable(
        "DFX_PG_USER",
        ALL,
        "`postgres`",
        "no",
        "run as root, the unprivileged user the PostgreSQL sandbox cluster runs as (the server refuses root)",
    ),
    Variable(
        "DFX_SMTP_HOST",
        LOCATION,
        "-",
        "yes",
        "the relay for sync-failure emails (the sensor runs in the daemon's code location)",
    ),
    Variable("DFX_SMTP_PORT", LOCATION, "`587`", "no", "the relay's port"),
    Variable("DFX_SMTP_FROM", LOCATION, "-", "yes", "the sender address"),
    Variable("DFX_SMTP_USERNAME", LOCATION, "none (no login)", "if the relay needs a login", "sent only over STARTTLS"),
    Variable("DFX_SMTP_PASSWORD", LOCATION, "-", "with `DFX_SMTP_USERNAME`", "as above"),
    Variable(
        "DFX_SLACK_WEBHOOK_URL",
        LOCATION,
        "none (no Slack)",
        "no",
        "a Slack incoming webhook for the same notifications (a secret)",
    ),
    Variable(
        "DFX_SLACK_WEBHOOK_HOSTS",
        LOCATION,
        "none (only `hooks.slack.com`)",
        "no",
        "comma-separated hosts the webhook may also point at (a company's outbound relay)",
    ),
    Variable(
        "DFX_APP_DB_URL",
        f"{CLI} (`dfx requests`), run workers",
        "-",
        "yes",
        "the application database the retention and data-subject jobs work on",
    ),
    Variable("USER", CLI, "`cli`", "no", "the actor `dfx` records in the lifecycle audit unless `--actor` is given"),
    Variable(
        "DFX_DAILY_START",
        LOCATION,
        "90 days before today",
        "no",
        "first day of the daily partitions (YYYY-MM-DD); the same in every process",
    ),
    Variable(
        "DFX_CONNECTOR_MODULES",
        ALL,
        "none (the built-in connectors)",
        "no",
        "comma-separated plugin module paths of connectors outside this package (`platform/catalogue.py`); the same in every process",
    ),
    Variable(
        "DFX_ACCESS_LOG_DIR",
        "run workers",
        "none (rule reported as not configured)",
        "no",
        "access logs the retention job prunes after 90 days",
    ),
    Variable(
        "DFX_EXECUTOR",
        LOCATION,
        "`in_process`",
        "no",
        "`celery`: the connector jobs' steps run on Celery workers (README, Running on Celery); the same in every process and worker",
    ),
    Variable(
        "DFX_CELERY_CONFIG",
        LOCATION,
        "-",
        "with `DFX_EXECUTOR=celery`",
        "the Celery YAML the workers are started with (`deploy/celery/celery.yaml`, whose broker and result URLs come from `DFX_CELERY_BROKER_URL` and `DFX_CELERY_BACKEND_URL`)",
    ),
)

BY_NAME = {variable.name: variable for variable in VARIABLES}


@dataclass(frozen=True)
class Finding:
    level: str  # "error" (production will not work) or "warning"
    variable: str
    message: str

    def line(self) -> str:
        return f"{self.level.upper():7s} {self.variable}: {self.message}"


def _master_key_problem(value: str) -> str | None:
    parts = [part.split(":", 1)[-1] for part in value.split(",")] if ":" in value else [value]
    for part in parts:
        try:
            if len(base64.b64decode(part.strip(), validate=True)) != 32:
                return "each key must be base64 of exactly 32 bytes"
        except (binascii.Error, ValueError):
            return "not base64 (expected `head -c32 /dev/urandom | base64`, or new:<b64>,old:<b64>)"
    return None


def _dagster_yaml_problem(home: str) -> str | None:
    config = Path(home) / "dagster.yaml"
    if not config.is_file():
        return f"{config} does not exist: copy this repository's dagster.yaml there"
    text = config.read_text(errors="replace")
    if "postgres" not in text:
        return f"{config} does not configure PostgreSQL storage (use this repository's dagster.yaml)"
    return None


def check(env: Mapping[str, str] | None = None) -> list[Finding]:
    """What is missing or inconsistent. In production every gap is an error; outside it, only what
    would fail anyway (a malformed value, half a pair) is reported."""
    env = os.environ if env is None else env
    production = env.get("DFX_MODE", "embedded") == "production"
    findings: list[Finding] = []

    def need(name: str, why: str, level: str = "error") -> None:
        if not env.get(name):
            findings.append(Finding(level if production else "warning", name, f"not set: {why}"))

    mode = env.get("DFX_MODE", "embedded")
    if mode not in ("embedded", "production"):
        findings.append(Finding("error", "DFX_MODE", f"must be embedded or production, got {mode!r}"))
    if env.get("DFX_MASTER_KEY") and (problem := _master_key_problem(env["DFX_MASTER_KEY"])):
        findings.append(Finding("error", "DFX_MASTER_KEY", problem))
    backend = env.get("DFX_VAULT_BACKEND", "local")
    if backend not in ("local", "gcp-secret-manager"):
        findings.append(Finding("error", "DFX_VAULT_BACKEND", f"must be local or gcp-secret-manager, got {backend!r}"))
    if backend == "gcp-secret-manager" and not env.get("DFX_VAULT_GCP_PROJECT"):
        findings.append(
            Finding("error", "DFX_VAULT_GCP_PROJECT", "DFX_VAULT_BACKEND=gcp-secret-manager needs the project")
        )
    if env.get("DFX_SMTP_PORT") and not env["DFX_SMTP_PORT"].isdigit():
        findings.append(Finding("error", "DFX_SMTP_PORT", f"not a port number: {env['DFX_SMTP_PORT']!r}"))
    if env.get("DFX_SMTP_PASSWORD") and not env.get("DFX_SMTP_USERNAME"):
        findings.append(
            Finding(
                "warning", "DFX_SMTP_USERNAME", "DFX_SMTP_PASSWORD is set but no username: the password is never used"
            )
        )
    if bool(env.get("DFX_SMTP_HOST")) != bool(env.get("DFX_SMTP_FROM")):
        missing = "DFX_SMTP_FROM" if env.get("DFX_SMTP_HOST") else "DFX_SMTP_HOST"
        findings.append(
            Finding("error", missing, "SMTP needs both DFX_SMTP_HOST and DFX_SMTP_FROM: failure emails stay queued")
        )
    for kind in ("SALESFORCE", "JIRA"):
        if env.get(f"{kind}_CLIENT_SECRET") and not env.get(f"{kind}_CLIENT_ID"):
            findings.append(
                Finding(
                    "error",
                    f"{kind}_CLIENT_ID",
                    f"{kind}_CLIENT_SECRET is set without its client id: the sandbox app's id would be sent",
                )
            )
    if not production:
        return findings

    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        need(name, "dagster.yaml reads it for Dagster's PostgreSQL storage")
    need("DAGSTER_HOME", "every Dagster process and `dfx` must share this repository's dagster.yaml")
    if env.get("DAGSTER_HOME") and (problem := _dagster_yaml_problem(env["DAGSTER_HOME"])):
        findings.append(Finding("error", "DAGSTER_HOME", problem))
    need("DFX_HOME", "without it each process uses ./.dfx of its own working directory")
    if env.get("DFX_HOME") and not Path(env["DFX_HOME"]).is_absolute():
        findings.append(Finding("error", "DFX_HOME", "must be an absolute path (processes start in different folders)"))
    need("DFX_MASTER_KEY", "production never generates a key file")
    need("DFX_METRICS_DB_URL", "the metric store would be a SQLite file per host")
    if env.get("DFX_METRICS_DB_URL", "").startswith("sqlite"):
        findings.append(
            Finding(
                "error", "DFX_METRICS_DB_URL", "SQLite in production: every process needs the same PostgreSQL database"
            )
        )
    if backend == "local":
        need("DFX_VAULT_DIR", "the local vault must be one folder shared by the CLI, the daemon and run workers")
        if env.get("DFX_VAULT_DIR") and not Path(env["DFX_VAULT_DIR"]).is_absolute():
            findings.append(Finding("error", "DFX_VAULT_DIR", "must be an absolute path"))
    # Needed only by deployments using that connector: a warning, not an error.
    need("SALESFORCE_CLIENT_ID", "Salesforce connections would use the sandbox's client id", "warning")
    need("JIRA_CLIENT_ID", "Jira Cloud OAuth would use the sandbox's client id", "warning")
    need("JIRA_CLIENT_SECRET", "Jira Cloud OAuth cannot connect or refresh tokens", "warning")
    need("DFX_SMTP_HOST", "sync-failure emails cannot be delivered (they stay queued)")
    need("DFX_SMTP_FROM", "sync-failure emails cannot be delivered (they stay queued)")
    if env.get("DFX_SMTP_USERNAME") and not env.get("DFX_SMTP_PASSWORD"):
        findings.append(Finding("error", "DFX_SMTP_PASSWORD", "DFX_SMTP_USERNAME is set without a password"))
    need("DFX_APP_DB_URL", "the retention and data-subject jobs fail without the application database")
    return findings


def report(env: Mapping[str, str] | None = None) -> tuple[list[str], bool]:
    """The one-screen report: every variable with its state (secrets shown only as set/unset), then the
    findings. Returns the lines and whether there is any error."""
    env = os.environ if env is None else env
    secret = ("PASSWORD", "SECRET", "MASTER_KEY", "TOKEN", "WEBHOOK", "DB_URL")
    lines = [f"DFX_MODE={env.get('DFX_MODE', 'embedded')}", ""]
    for variable in VARIABLES:
        value = env.get(variable.name)
        default = variable.default.replace("`", "")
        shown = (
            ("unset" if default == "-" else f"unset (default: {default})")
            if not value
            else ("set" if any(s in variable.name for s in secret) else value)
        )
        lines.append(f"  {variable.name:26s} {shown}")
    findings = check(env)
    lines.append("")
    lines.extend(f.line() for f in findings)
    if not findings:
        lines.append("OK: nothing missing or inconsistent")
    return lines, any(f.level == "error" for f in findings)


def markdown_table() -> str:
    """The README's production table, from this catalogue (a test keeps the README equal to it)."""
    lines = ["| variable | read by | default | production | what |", "|---|---|---|---|---|"]
    for v in VARIABLES:
        lines.append(f"| `{v.name}` | {v.read_by} | {v.default} | {v.production} | {v.what} |")
    return "\n".join(lines)
