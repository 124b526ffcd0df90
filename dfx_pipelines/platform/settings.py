"""Where things live, read from the environment once: the local home folder, the metric database,
the vault backend, and whether sandbox (embedded default) or production rules apply.

The embedded default needs no variable at all: everything goes under `./.dfx/` (git-ignored).
Production sets DFX_MODE=production, DFX_METRICS_DB_URL, DFX_VAULT_BACKEND and DFX_MASTER_KEY.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from dfx_pipelines.platform.errors import ConfigError

MODES = ("embedded", "production")
VAULT_BACKENDS = ("local", "gcp-secret-manager")


@dataclass(frozen=True)
class Settings:
    home: Path
    mode: str
    metrics_db_url: str
    vault_backend: str
    vault_dir: Path
    master_key_file: Path
    gcp_project: str | None

    @property
    def sandbox_allowed(self) -> bool:
        """Loopback sandbox hosts and the sandbox CA are trusted only outside production."""
        return self.mode != "production"

    @property
    def sandbox_dir(self) -> Path:
        return self.home / "sandbox"

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        home = Path(env.get("DFX_HOME") or Path.cwd() / ".dfx").absolute()
        mode = env.get("DFX_MODE", "embedded")
        if mode not in MODES:
            raise ConfigError(f"DFX_MODE must be one of {', '.join(MODES)}, got {mode!r}")
        backend = env.get("DFX_VAULT_BACKEND", "local")
        if backend not in VAULT_BACKENDS:
            raise ConfigError(f"DFX_VAULT_BACKEND must be one of {', '.join(VAULT_BACKENDS)}, got {backend!r}")
        if backend == "gcp-secret-manager" and not env.get("DFX_VAULT_GCP_PROJECT"):
            raise ConfigError("DFX_VAULT_BACKEND=gcp-secret-manager needs DFX_VAULT_GCP_PROJECT")
        if mode == "production" and not env.get("DFX_MASTER_KEY"):
            raise ConfigError("DFX_MODE=production needs DFX_MASTER_KEY (no generated key file in production)")
        metrics_db_url = env.get("DFX_METRICS_DB_URL", "").strip()
        if mode == "production" and not metrics_db_url.startswith("postgresql"):
            # The embedded default is a SQLite file beside the vault: in a container it would vanish with the
            # pod and every aggregate with it, and two workers would each write their own.
            raise ConfigError(
                "DFX_MODE=production needs DFX_METRICS_DB_URL naming the PostgreSQL metric database "
                "(postgresql+psycopg2://…); the embedded SQLite default is refused in production"
            )
        return cls(
            home=home,
            mode=mode,
            metrics_db_url=metrics_db_url or f"sqlite:///{home / 'metrics.db'}",
            vault_backend=backend,
            vault_dir=Path(env.get("DFX_VAULT_DIR") or home / "vault").absolute(),
            master_key_file=home / "master.key",
            gcp_project=env.get("DFX_VAULT_GCP_PROJECT"),
        )
