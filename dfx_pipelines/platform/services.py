"""The platform's services for one process: settings, metric database, registry, metric store, vault.

Built lazily (never at import) and cached per settings, so Dagster definitions load without touching
a database, a file or the network.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from functools import cached_property

import sqlalchemy as sa

from dfx_pipelines.platform.db import get_engine
from dfx_pipelines.platform.metric_store import MetricStore
from dfx_pipelines.platform.registry import Registry
from dfx_pipelines.platform.settings import Settings
from dfx_pipelines.platform.vault import (
    GoogleSecretManagerBackend,
    LocalFileBackend,
    MasterKeyring,
    Vault,
    VaultBackend,
)


def load_keyring(settings: Settings) -> MasterKeyring:
    value = os.environ.get("DFX_MASTER_KEY")
    if value:
        return MasterKeyring.from_env_value(value)
    return MasterKeyring.load_or_create(settings.master_key_file)


def build_vault(settings: Settings) -> Vault:
    if settings.vault_backend == "gcp-secret-manager":
        backend: VaultBackend = GoogleSecretManagerBackend(project_id=settings.gcp_project or "")
    else:
        backend = LocalFileBackend(settings.vault_dir)
    return Vault(backend, load_keyring(settings))


@dataclass(frozen=True)
class Platform:
    settings: Settings

    @cached_property
    def engine(self) -> sa.Engine:
        return get_engine(self.settings.metrics_db_url)

    @cached_property
    def registry(self) -> Registry:
        return Registry(self.engine)

    @cached_property
    def metric_store(self) -> MetricStore:
        return MetricStore(self.engine)

    @cached_property
    def vault(self) -> Vault:
        return build_vault(self.settings)


_platforms: dict[Settings, Platform] = {}
_lock = threading.Lock()


def get_platform(settings: Settings | None = None) -> Platform:
    settings = settings or Settings.from_env()
    with _lock:
        platform = _platforms.get(settings)
        if platform is None:
            platform = _platforms[settings] = Platform(settings)
        return platform
