"""Fixtures shared by every test: isolated settings under a temp folder, a fresh PostgreSQL database,
and the platform services built on them. PostgreSQL is the real server on 127.0.0.1:5432."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

# The in-process tests' sandboxes live on fixed days (2024 warehouse, 2025 Jira site, November 2026
# org), so their daily partitions start on a fixed day. Set before any definition is imported; tests of
# the production window (the webserver test) start their processes without it.
os.environ["DFX_DAILY_START"] = "2024-01-01"

from dfx_pipelines.platform.db import dispose_engine
from dfx_pipelines.platform.registry import Workspace
from dfx_pipelines.platform.services import Platform
from dfx_pipelines.platform.settings import Settings

PG_ADMIN_URL = os.environ.get("DFX_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist (`make test`, `--dist loadgroup`) tests spread one by one over the workers, except that
    a module's tests sharing a module- or class-scoped fixture (a running sandbox, the Dagster UI's
    webserver and daemon) stay on one worker, so that fixture starts once rather than once per worker."""
    for item in items:
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        if any(d.scope in ("module", "class") for fixturedefs in defs.values() for d in fixturedefs):
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test sees the developer's DFX_* / DAGSTER_HOME, and none writes outside its temp folder."""
    for name in list(os.environ):
        if name.startswith(("DFX_", "DAGSTER_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("DFX_HOME", str(tmp_path / "dfx_home"))


@pytest.fixture(autouse=True)
def _no_defs_state_storage(monkeypatch: pytest.MonkeyPatch) -> None:
    """The project uses no state-backed definitions, so loading definitions needs no defs-state storage.
    In a long test session Dagster's storage object can outlive the instance it is bound to, and
    `materialize` then fails with "undefined DagsterInstance weakref" depending on garbage-collection
    timing; without a storage, definitions load exactly as the project's do."""
    from dagster._core.storage.defs_state.base import DefsStateStorage

    monkeypatch.setattr(DefsStateStorage, "get", classmethod(lambda cls: None))


@pytest.fixture(autouse=True)
def _isolated_dagster_thread_state() -> Iterator[None]:
    """No test inherits Dagster's per-thread state from another. Each DagsterInstance makes its own
    "defs state storage" current (a context variable) and restores the previous one on exit; instances
    of earlier tests, closed out of order, can leave a storage current whose instance is gone, and a
    later `materialize` then fails with "undefined DagsterInstance weakref". Likewise the
    partition-loading context and log handlers bound to an earlier instance."""
    import logging

    from dagster._core.definitions.partitions.context import _current_ctx
    from dagster._core.log_manager import DagsterLogHandler
    from dagster._core.storage.defs_state.base import _current_storage

    partition_token, storage_token = _current_ctx.set(None), _current_storage.set(None)
    yield
    _current_ctx.reset(partition_token)
    _current_storage.reset(storage_token)
    for name in ("dagster", "dfx_pipelines", ""):
        logger = logging.getLogger(name) if name else logging.getLogger()
        for handler in [h for h in logger.handlers if isinstance(h, DagsterLogHandler)]:
            logger.removeHandler(handler)


@pytest.fixture(scope="session", autouse=True)
def _alembic_scripts_read_once() -> Iterator[None]:
    """Alembic reads and executes every migration file each time it is asked for a script directory, and
    Dagster asks twice for every SQLite database it opens, including the event-log shard of every run
    (~90 files each time: most of a run's storage cost). The migration files do not change during a test
    session, so each directory is read once per process; what is run against each database (the revision
    check, `upgrade`, `stamp`) is unchanged."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    real = ScriptDirectory.from_config.__func__
    loaded: dict[tuple, ScriptDirectory] = {}

    def from_config(cls: type[ScriptDirectory], config: Config) -> ScriptDirectory:
        key = (cls, config.get_main_option("script_location"), config.get_main_option("version_locations"))
        if key not in loaded:
            loaded[key] = real(cls, config)
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ScriptDirectory, "from_config", classmethod(from_config))
        yield


@pytest.fixture(scope="session")
def _migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty metric database at the migrations' heads, made once per session (per xdist worker) by the
    real `get_engine` (alembic upgrade on a new SQLite file)."""
    from dfx_pipelines.platform.db import get_engine

    path = tmp_path_factory.mktemp("metrics_template") / "metrics.db"
    url = f"sqlite:///{path}"
    get_engine(url)
    dispose_engine(url)
    return path


@pytest.fixture(autouse=True)
def _premigrated_sqlite(monkeypatch: pytest.MonkeyPatch, _migrated_sqlite_template: Path) -> None:
    """Running every migration on a new SQLite metric database costs ~0.5 s, and hundreds of tests open
    one. A new file is instead started as a copy of the session's migrated template; the real `_open`
    then still runs `migrate` on it (a no-op at heads), so the schema is exactly what the migrations
    make. Only absolute, plain file URLs that do not exist yet are seeded; anything else (an existing
    file, a path under a file, `:memory:`, URL options) goes through unchanged."""
    import shutil

    from dfx_pipelines.platform import db

    real_open = db._open

    def _open(url: str) -> sa.Engine:
        path = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:////") else None
        if path is not None and "?" not in url and path.suffix == ".db" and not path.exists():
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(_migrated_sqlite_template, path)
            except OSError:  # the real `_open` reports what is wrong with the path
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
        return real_open(url)

    monkeypatch.setattr(db, "_open", _open)


_DAGSTER_STORAGE_KEYS = ("storage", "run_storage", "event_log_storage", "schedule_storage")


@pytest.fixture(autouse=True)
def _premigrated_dagster_storage(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """`dg.instance_for_test` builds Dagster's SQLite storage (runs, event-log index, schedules) by running
    Dagster's migrations: 2-4 s per instance, and the suite makes a few hundred. An instance on the default
    storage whose folder has no storage yet instead starts from a copy of the storage a real
    `instance_for_test` built once per session (per xdist worker), so each test still gets a fresh, empty
    instance of its own; Dagster still checks the copied storage's revision when it opens it. Instances
    with configured storage (PostgreSQL) or an existing folder are built exactly as before."""
    import shutil
    import tempfile

    import dagster as dg

    real = dg.instance_for_test

    def storage_template() -> Path:
        if not _dagster_template:
            folder = tmp_path_factory.mktemp("dagster_storage_template")
            with real(temp_dir=str(folder)):
                pass
            (folder / "dagster.yaml").unlink()  # instance_for_test writes each instance's own
            _dagster_template.append(folder)
        return _dagster_template[0]

    @contextlib.contextmanager
    def instance_for_test(
        overrides: dict | None = None, set_dagster_home: bool = True, temp_dir: str | None = None, **kwargs: bool
    ) -> Iterator[dg.DagsterInstance]:
        with contextlib.ExitStack() as stack:
            if not any(key in (overrides or {}) for key in _DAGSTER_STORAGE_KEYS):
                if not temp_dir:
                    temp_dir = stack.enter_context(tempfile.TemporaryDirectory(ignore_cleanup_errors=True))
                target = Path(temp_dir)
                if not any((target / name).exists() for name in ("history", "schedules", "storage")):
                    shutil.copytree(storage_template(), target, dirs_exist_ok=True)
            yield stack.enter_context(
                real(overrides=overrides, set_dagster_home=set_dagster_home, temp_dir=temp_dir, **kwargs)
            )

    monkeypatch.setattr(dg, "instance_for_test", instance_for_test)


_dagster_template: list[Path] = []

PUBLIC_ADDRESS = "93.184.215.14"


@pytest.fixture
def vendor_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The network edge for tests that check a vendor's real host name in production mode: every URL
    check resolves its host (`platform.endpoints`), and the test machine has no DNS. Names other than
    loopback ones resolve to one public address; returns the names looked up."""
    import socket

    real, looked_up = socket.getaddrinfo, []

    def getaddrinfo(host, port, *args, **kwargs):
        looked_up.append(host)
        if host in ("localhost", "127.0.0.1", "::1"):
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (PUBLIC_ADDRESS, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return looked_up


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"DFX_HOME": str(tmp_path / "dfx_home")})


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    yield Platform(settings)
    dispose_engine(settings.metrics_db_url)


@pytest.fixture
def workspace(platform: Platform) -> Workspace:
    return platform.registry.upsert_workspace(Workspace(id="acme", name="Acme Corp", owner_email="owner@acme.test"))


@pytest.fixture(scope="session")
def pg_database() -> Iterator[dict[str, str]]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"dfx_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as db:
        db.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(PG_ADMIN_URL).set(database=name)
    yield {
        "url": url.render_as_string(hide_password=False),
        "host": url.host or "127.0.0.1",
        "port": str(url.port or 5432),
        "username": url.username or "postgres",
        "password": url.password or "",
        "db_name": name,
    }
    dispose_engine(url.render_as_string(hide_password=False))
    with admin.connect() as db:
        db.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def pg_platform(settings: Settings, pg_database: dict[str, str]) -> Iterator[Platform]:
    """Platform services whose metric database is the real PostgreSQL (tables emptied per test)."""
    platform = Platform(dataclasses.replace(settings, metrics_db_url=pg_database["url"]))
    engine = platform.engine
    yield platform
    with engine.begin() as db:
        db.execute(sa.text("TRUNCATE metric_values, metric_batches, connections, workspaces CASCADE"))
