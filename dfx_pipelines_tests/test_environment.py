"""The README's production table against the variables the code actually reads, and `dfx doctor`.

The scan walks every module's AST for environment reads — `os.environ.get/[]`, `os.getenv`, `EnvVar(...)`,
`env.get/[]` on an environment mapping (as `Settings.from_env` does), and calls of a helper that passes
one of its parameters to `os.environ.get` (`SmtpResource._value(field, "DFX_SMTP_HOST")`) — resolving
module constants, plus `env:` keys of `dagster.yaml`. A read whose name is not a constant fails the test:
no variable may hide from the table.
"""

import ast
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dfx_pipelines.cli import main
from dfx_pipelines.platform import environment
from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "dfx_pipelines"
ENV_NAMES = ("environ", "env")  # names an environment mapping is bound to (os.environ, Settings.from_env's env)


def _is_os_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id in ENV_NAMES
    )


def _constants(tree: ast.Module) -> dict[str, str]:
    return {
        target.id: node.value.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def _env_helpers(tree: ast.Module) -> dict[str, int]:
    """Functions that read the variable named by one of their parameters: name -> that parameter's position
    among the call's arguments (self excluded)."""
    helpers = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef):
            continue
        params = [a.arg for a in node.args.args if a.arg not in ("self", "cls")]
        for inner in ast.walk(node):
            if (
                isinstance(inner, ast.Call)
                and _reads_env(inner)
                and inner.args
                and isinstance(inner.args[0], ast.Name)
                and inner.args[0].id in params
            ):
                helpers[node.name] = params.index(inner.args[0].id)
    return helpers


def _reads_env(call: ast.Call) -> bool:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value):
        return True
    if isinstance(func, ast.Attribute) and func.attr == "getenv":
        return True
    return (isinstance(func, ast.Name) and func.id == "EnvVar") or (
        isinstance(func, ast.Attribute) and func.attr == "EnvVar"
    )


def variables_read_by_code() -> dict[str, set[str]]:
    """Variable name -> where it is read (path:line). Skips the catalogue itself, which names them all."""
    trees = {
        path: ast.parse(path.read_text())
        for path in PACKAGE.rglob("*.py")
        if path.name != "environment.py" or path.parent.name != "platform"
    }
    helpers: dict[str, int] = {}
    for tree in trees.values():
        helpers.update(_env_helpers(tree))
    found: dict[str, set[str]] = {}
    unresolved: list[str] = []
    for path, tree in trees.items():
        constants = _constants(tree)

        # the current iteration's module, bound now: `record` must not see a later one
        def record(arg: ast.AST, node: ast.AST, constants: dict[str, str] = constants, path: Path = path) -> None:
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found.setdefault(arg.value, set()).add(where)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                found.setdefault(constants[arg.id], set()).add(where)
            else:
                unresolved.append(where)

        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and _reads_env(node):
                if node.args:
                    record(node.args[0], node)
            elif isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                if name in helpers and len(node.args) > helpers[name]:
                    record(node.args[helpers[name]], node)
            elif isinstance(node, ast.Subscript) and _is_os_environ(node.value) and isinstance(node.ctx, ast.Load):
                record(node.slice, node)
            elif (
                isinstance(node, ast.Compare)
                and any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops)
                and _is_os_environ(node.comparators[0])
            ):
                record(node.left, node)
    # Reads inside the helpers themselves (their parameter) are what `helpers` resolves at the call sites.
    helper_lines = {f"{path.relative_to(ROOT)}:{inner.lineno}" for path, tree in trees.items() for node in ast.walk(tree)
                    if isinstance(node, ast.FunctionDef) and node.name in helpers for inner in ast.walk(node) if isinstance(inner, ast.Call)}  # fmt: skip
    assert not [u for u in unresolved if u not in helper_lines], (
        f"environment reads whose variable name is not a constant: {unresolved}"
    )
    return found


def variables_read_by_dagster_yaml() -> set[str]:
    names: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if set(node) == {"env"}:
                names.add(node["env"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load((ROOT / "dagster.yaml").read_text()))
    return names


def readme_production_rows() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Production\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", section, flags=re.MULTILINE)


def test_the_scan_finds_what_it_must() -> None:
    """The scan itself: names known to be read through each route are found (else the next test proves nothing)."""
    read = variables_read_by_code()
    assert {"DFX_HOME", "DFX_VAULT_DIR"} <= set(read)  # Settings.from_env's env.get
    assert {"SALESFORCE_CLIENT_SECRET", "JIRA_CLIENT_SECRET"} <= set(read)  # EnvVar / os.environ.get
    assert {"DFX_SMTP_HOST", "DFX_SMTP_FROM"} <= set(read)  # through SmtpResource._value
    assert {"DFX_APP_DB_URL", "JIRA_API_TOKEN"} <= set(read)  # module constants
    assert "DAGSTER_PG_PASSWORD" in variables_read_by_dagster_yaml()


def test_readme_production_table_names_every_variable_the_code_reads_and_no_other() -> None:
    rows = readme_production_rows()
    assert len(rows) == len(set(rows)), "a variable appears twice in the README's production table"
    read = set(variables_read_by_code()) | variables_read_by_dagster_yaml()
    assert sorted(read - set(rows)) == [], "read by the code but missing from the README's production table"
    assert sorted(set(rows) - read) == [], "in the README's production table but read nowhere"


def test_readme_table_is_the_catalogue_dfx_doctor_checks() -> None:
    assert environment.markdown_table() in (ROOT / "README.md").read_text()
    assert [v.name for v in environment.VARIABLES] == readme_production_rows()


PRODUCTION = {
    "DFX_MODE": "production", "DAGSTER_PG_HOST": "db", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "dagster",
    "DAGSTER_PG_PASSWORD": "pw", "DAGSTER_PG_DB": "dagster", "DFX_HOME": "/srv/dfx", "DFX_VAULT_DIR": "/srv/dfx/vault",
    "DFX_MASTER_KEY": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "DFX_METRICS_DB_URL": "postgresql+psycopg2://dfx@db/dfx",
    "SALESFORCE_CLIENT_ID": "3MVG9", "SALESFORCE_CLIENT_SECRET": "sf-secret", "JIRA_CLIENT_ID": "jira-app", "JIRA_CLIENT_SECRET": "jira-secret",
    "DFX_SMTP_HOST": "smtp.example.com", "DFX_SMTP_FROM": "alerts@example.com", "DFX_APP_DB_URL": "postgresql+psycopg2://app@db/app",
}  # fmt: skip


@pytest.mark.parametrize("url", [None, "", "  ", "sqlite:////srv/dfx/metrics.db", "duckdb:///m.db"])
def test_production_never_falls_back_to_the_embedded_metric_database(url: str | None) -> None:
    env = {k: v for k, v in PRODUCTION.items() if k != "DFX_METRICS_DB_URL"}
    if url is not None:
        env["DFX_METRICS_DB_URL"] = url
    with pytest.raises(ConfigError, match=r"DFX_METRICS_DB_URL.*SQLite default is refused"):
        Settings.from_env(env)
    assert Settings.from_env(PRODUCTION).metrics_db_url == PRODUCTION["DFX_METRICS_DB_URL"]
    embedded = {k: v for k, v in PRODUCTION.items() if k not in ("DFX_MODE", "DFX_METRICS_DB_URL")}
    assert Settings.from_env(embedded).metrics_db_url.startswith("sqlite:///")  # the demo keeps its default


@pytest.fixture
def dagster_home(tmp_path: Path) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    return home


def test_doctor_passes_a_complete_production_environment(monkeypatch: pytest.MonkeyPatch, dagster_home: Path) -> None:
    for name, value in {**PRODUCTION, "DAGSTER_HOME": str(dagster_home)}.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "OK: nothing missing or inconsistent" in result.output
    for secret in ("pw", "sf-secret", "jira-secret", PRODUCTION["DFX_MASTER_KEY"], "app@db"):
        assert f" {secret}\n" not in result.output and secret not in result.output.replace(
            "DAGSTER_PG_PASSWORD", ""
        )  # secrets show as "set"
    assert all(v.name in result.output for v in environment.VARIABLES)  # every variable on the one screen


def test_doctor_reports_what_production_misses_in_one_screen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    partial = {
        k: v
        for k, v in PRODUCTION.items()
        if k not in ("DFX_HOME", "DFX_VAULT_DIR", "DFX_SMTP_FROM", "DFX_APP_DB_URL", "JIRA_CLIENT_ID")
    }
    for name, value in {
        **partial,
        "DAGSTER_HOME": str(tmp_path / "nowhere"),
        "DFX_METRICS_DB_URL": "sqlite:///x.db",
        "DFX_MASTER_KEY": "c2hvcnQ=",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("DFX_HOME")  # the test harness sets one
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    errors = {line.split()[1].rstrip(":") for line in result.output.splitlines() if line.startswith("ERROR")}
    assert errors == {
        "DFX_HOME",
        "DFX_VAULT_DIR",
        "DFX_SMTP_FROM",
        "DFX_APP_DB_URL",
        "DAGSTER_HOME",
        "DFX_METRICS_DB_URL",
        "DFX_MASTER_KEY",
        "JIRA_CLIENT_ID",
    }
    assert (
        "dagster.yaml does not exist" in result.output
        and "32 bytes" in result.output
        and "SQLite in production" in result.output
    )


def test_doctor_outside_production_reports_only_what_is_broken(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CliRunner().invoke(main, ["doctor"]).exit_code == 0  # the embedded default needs nothing
    monkeypatch.setenv("DFX_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("DFX_SMTP_PORT", "twenty-five")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1 and "DFX_SMTP_FROM" in result.output and "not a port number" in result.output
