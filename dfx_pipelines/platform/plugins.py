"""The small interface every connector implements so the CLI, the demo and the privacy lifecycle can
work with any connector kind without knowing its details. A new connector adds one module path to
`dfx_pipelines.connectors.PLUGIN_MODULES`; nothing here changes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import dagster as dg

from dfx_pipelines.platform.registry import Connection
from dfx_pipelines.platform.sandbox import SandboxCA, SandboxServer
from dfx_pipelines.platform.services import Platform


@dataclass
class RunningSandbox:
    """A connector's sandbox started for the demo, `dfx dev` or `dfx sandbox serve`."""

    kind: str
    servers: list[SandboxServer]
    state: dict[str, Any] = field(default_factory=dict)  # what the plugin needs to connect to it

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


@dataclass(frozen=True)
class DemoRun:
    """One job run `dfx demo` launches: a partition key, or a partition range through `tags`."""

    job_name: str
    partition_key: str | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ConnectCommand:
    """A ready-to-paste `dfx connect ...` for a served sandbox: the variables it needs and its arguments
    (after `dfx`). `dfx sandbox serve` prints it; the tests run exactly this."""

    env: dict[str, str]
    argv: list[str]

    def shell(self) -> str:
        import shlex

        assignments = [f"{name}={shlex.quote(value)}" for name, value in self.env.items()]
        return " ".join([*assignments, "dfx", *(shlex.quote(arg) for arg in self.argv)])


@dataclass(frozen=True)
class RevocationResult:
    provider_revoked: bool  # the provider confirmed the token is dead (False where it has no revoke API)
    detail: str


class ConnectorPlugin(Protocol):
    kind: str
    secret_kinds: tuple[str, ...]

    def definitions(self) -> dg.Definitions:
        """Assets, checks, jobs, schedules and sensors of this connector."""
        ...

    def start_sandbox(self, ca: SandboxCA, *, scale: int | None = None) -> RunningSandbox:
        """Start this connector's sandbox servers on loopback (demo-sized unless `scale` says more)."""
        ...

    def connect_demo(self, platform: Platform, sandbox: RunningSandbox, workspace_id: str) -> Connection:
        """Connect (or reconnect) the demo connection to a running sandbox, as a user would."""
        ...

    def demo_runs(self, connection: Connection, days: int) -> list[DemoRun]:
        """The runs `dfx demo` launches for this connector's demo connection (daily metrics: last `days`)."""
        ...

    # Optional: `cli_commands(self) -> list[click.Command]` adds connector-specific `dfx` subcommands.
    # Optional: `connect_command(self, sandbox, *, workspace_id, folder) -> ConnectCommand` says how a
    # user connects to a sandbox started by `start_sandbox` (files it needs go under `folder`, mode 0600).

    def revoke_at_provider(self, platform: Platform, connection: Connection) -> RevocationResult:
        """Invalidate the connection's credentials at the provider, where it offers that."""
        ...
