"""Fixtures shared by every test: isolated settings under a temp folder, a fresh PostgreSQL database,
and the platform services built on them. PostgreSQL is the real server on 127.0.0.1:5432."""

from __future__ import annotations

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
