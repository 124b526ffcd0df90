"""The house rules of ../shared/design.md, checked on every module's imports (function-level ones too):
a connector imports `platform/` but never another connector; `platform/` imports no connector and no
lifecycle code; the pure parts (metric reducers, the budget arithmetic) import neither Dagster nor any
client library nor anything that does I/O."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dfx_pipelines"
CONNECTORS = sorted(p.name for p in (PACKAGE / "connectors").iterdir() if (p / "plugin.py").exists())
# The metric reducers, the budget arithmetic, and the pure helpers they build on (SOQL building, selections,
# the shared SQL gate and its resolution of what a query reads, the warehouses' result rows). Each connector's selection model is pure too.
PURE = sorted([
    *PACKAGE.glob("connectors/*/metrics*.py"), *PACKAGE.glob("connectors/*/selection.py"),
    PACKAGE / "connectors" / "bigquery" / "gate.py",
    PACKAGE / "connectors" / "bigquery" / "column_reads.py",
    *PACKAGE.glob("platform/sql_gate/*.py"),
    PACKAGE / "platform" / "warehouse_results.py",
    PACKAGE / "connectors" / "salesforce" / "queries.py",
])  # fmt: skip
# What pure code may use of the project besides other pure modules: errors, metric rows, identifier
# patterns and the connection model (registry.py also holds its persistence, which pure code never calls).
PURE_PLATFORM = {PACKAGE / "platform" / f"{name}.py" for name in ("errors", "metric_rows", "identifiers", "registry")}
IMPURE_ROOTS = {
    "dagster",
    "requests",
    "simple_salesforce",
    "jira",
    "google",
    "psycopg",
    "sqlalchemy",
    "httpx",
    "urllib3",
    "socket",
    "http",
}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from dfx_pipelines.platform import identifiers` imports dfx_pipelines.platform.identifiers
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def module_path(module: str) -> Path | None:
    """The project file a dotted import names (`a.b.name` may be a module or a name in `a.b`)."""
    parts = module.split(".")
    while parts and parts[0] == "dfx_pipelines":
        candidate = PACKAGE.parent.joinpath(*parts).with_suffix(".py")
        if candidate.exists():
            return candidate
        if PACKAGE.parent.joinpath(*parts, "__init__.py").exists():
            return PACKAGE.parent.joinpath(*parts, "__init__.py")
        parts = parts[:-1]
    return None


def modules_under(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def test_the_rules_see_every_connector_and_pure_module() -> None:
    assert CONNECTORS == ["bigquery", "jira", "postgres", "salesforce"]
    assert len(PURE) >= 6 and all(p.exists() for p in PURE)


@pytest.mark.parametrize("connector", CONNECTORS)
def test_a_connector_never_imports_another(connector: str) -> None:
    others = tuple(f"dfx_pipelines.connectors.{other}" for other in CONNECTORS if other != connector)
    offenders = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in modules_under(PACKAGE / "connectors" / connector)
        for module in imported_modules(path)
        if module.startswith(others)
    }
    assert offenders == set()


def test_platform_imports_no_connector_and_no_lifecycle() -> None:
    offenders = {
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in modules_under(PACKAGE / "platform")
        for module in imported_modules(path)
        if module.startswith(
            ("dfx_pipelines.connectors", "dfx_pipelines.lifecycle", "dfx_pipelines.cli", "dfx_pipelines.definitions")
        )
    }
    assert offenders == set()


@pytest.mark.parametrize("path", PURE, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_pure_modules_do_no_io(path: Path) -> None:
    offenders = {module for module in imported_modules(path) if module.split(".")[0] in IMPURE_ROOTS}
    offenders |= {
        module for module in imported_modules(path)
        if module.startswith("dfx_pipelines.") and module_path(module) not in {*PURE, *PURE_PLATFORM}
    }  # fmt: skip
    assert offenders == set()


def test_nothing_reads_outside_the_repository() -> None:
    """A fresh clone on a user's machine has nothing beside it: no code, test or benchmark may name a
    path outside the repository (the workplace's shared folder, an absolute home). Fixtures the tests
    validate against live in the repository with their licences."""
    repository = PACKAGE.parent
    outside = re.compile(r"""["'](/work/|/home/|/root/|(\.\./)+shared\b)""")
    offenders = {
        f"{path.relative_to(repository)}:{number}"
        for folder in ("dfx_pipelines", "dfx_pipelines_tests", "bench")
        for path in modules_under(repository / folder)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if outside.search(line)
    }
    assert offenders == set()
