"""What a person hands the `dfx` command, checked before anything is done with it: JSON files that
must parse, amounts that must be finite and in range, and the settings every command depends on.

Each problem is a `ConfigError` naming the option or variable and what is wrong with it, so the CLI
prints one line and exits 2 with nothing changed. Nothing here reads a secret's value into a message.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import click

from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.settings import Settings


def read_json_file(path: str | Path, option: str) -> Any:
    """The parsed JSON of a file given with `option`, or a `ConfigError` naming the file, line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{option} {path}: cannot be read ({type(exc).__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{option} {path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None


class BoundedAmount(click.ParamType):
    """A finite decimal amount within [minimum, maximum]: `inf`, `nan`, negatives and absurd values are
    refused at parse time (Python's float() accepts all of them), with the bounds in the message."""

    name = "amount"

    def __init__(self, minimum: float, maximum: float, *, allow_minimum: bool = True):
        self.minimum, self.maximum, self.allow_minimum = minimum, maximum, allow_minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float):
            number = value
        else:
            try:
                number = float(str(value).strip())
            except ValueError:
                self.fail(f"{value!r} is not a number", param, ctx)
        low_ok = number >= self.minimum if self.allow_minimum else number > self.minimum
        if not math.isfinite(number) or not low_ok or number > self.maximum:
            bound = "from" if self.allow_minimum else "above"
            self.fail(f"{value!r} is not a finite amount {bound} {self.minimum:g} up to {self.maximum:g}", param, ctx)
        return number


def check_settings(settings: Settings, environ: dict[str, str] | None = None) -> None:
    """What every command checks once, at start, before it touches a store: a malformed master key, a
    metric-database URL that is not a URL, or a home/vault folder that cannot be a folder is reported
    now, by every command, rather than by whichever command first happens to need it."""
    env = os.environ if environ is None else environ
    master_key = env.get("DFX_MASTER_KEY")
    if master_key:
        from dfx_pipelines.platform.errors import VaultError
        from dfx_pipelines.platform.vault import MasterKeyring

        try:
            MasterKeyring.from_env_value(master_key)
        except VaultError as exc:
            raise ConfigError(str(exc)) from None
    import sqlalchemy as sa

    try:
        url = sa.engine.make_url(settings.metrics_db_url)
    except sa.exc.ArgumentError:
        raise ConfigError(
            "DFX_METRICS_DB_URL is not a database URL (e.g. postgresql+psycopg2://user@host/db)"
        ) from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"DFX_METRICS_DB_URL: {url.get_backend_name()} is not supported (PostgreSQL, or SQLite for the embedded default)"
        )
    folders = [("DFX_HOME", settings.home)]
    if settings.vault_backend == "local":
        folders.append(("DFX_VAULT_DIR", settings.vault_dir))
    if url.get_backend_name() == "sqlite" and url.database:
        folders.append(("DFX_METRICS_DB_URL", Path(url.database).absolute().parent))
    for variable, folder in folders:
        _check_folder(variable, folder)


def _check_folder(variable: str, folder: Path) -> None:
    """The folder exists, or can be made: its nearest existing ancestor is a writable directory.
    (An existing folder's own permissions are the store's business: read-only commands may use one.)"""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{variable}: {folder} cannot be a folder ({existing} is a file)")
    if existing != folder and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{variable}: {folder} cannot be created ({existing} is not writable)")
