"""The interface every connector implements, so the platform, the CLI, the demo and the privacy lifecycle
work with any connector kind without knowing its details. A connector registers by its plugin module's
path alone (`dfx_pipelines.connectors.PLUGIN_MODULES`, or `DFX_CONNECTOR_MODULES` out of tree: see
`platform.catalogue`); nothing here or elsewhere in the platform changes.

`ConnectorPlugin` is a base class, not a protocol found out with `getattr`: what every connector must
provide is abstract, and each optional capability has an explicit default here (no CLI commands, no
connect command for its sandbox, no data kept outside the metric store, no field mapper, no write-back).

A plugin module stays cheap to import: it imports its selection model and this module, and builds its
Dagster definitions, sandbox and clients only inside the methods that need them.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from dfx_pipelines.platform.registry import Connection, SelectionBase, WriteBackDesignation

if TYPE_CHECKING:
    import click
    import dagster as dg

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


class ConnectorPlugin(abc.ABC):
    """One connector kind. Subclasses set `kind`, `secret_kinds` and `selection_model`, implement the
    abstract methods, and override a capability's default only when the connector has it."""

    kind: ClassVar[str]  # lower-case; names its partitions, asset key prefix and `dfx` commands
    secret_kinds: ClassVar[tuple[str, ...]] = ()  # what the vault may hold for one of its connections
    # The customer's selection for this kind: its fields, their shapes and the identifier rules
    # (`SelectionBase.check`). Stored as the connection's `selection` JSON.
    selection_model: ClassVar[type[SelectionBase]] = SelectionBase
    # At most this many steps call the vendor's API at once, across every run and every worker (Celery
    # included): the limit of the Dagster concurrency pool named `pool`, which each of the connector's
    # API-calling assets and ops declares (`pool=`). `dfx dev`/`dfx demo` and `dfx instance apply-pools`
    # write it into the instance (platform.instance_concurrency). A connector that says nothing gets 2,
    # a budget no vendor API we know of refuses.
    pool_limit: ClassVar[int] = 2

    # ------------------------------------------------------------------ required

    @abc.abstractmethod
    def definitions(self) -> dg.Definitions:
        """Assets, checks, jobs, schedules and sensors of this connector (merged into the root Definitions)."""

    @abc.abstractmethod
    def start_sandbox(self, ca: SandboxCA, *, scale: int | None = None) -> RunningSandbox:
        """Start this connector's sandbox servers on loopback (demo-sized unless `scale` says more)."""

    @abc.abstractmethod
    def connect_demo(self, platform: Platform, sandbox: RunningSandbox, workspace_id: str) -> Connection:
        """Connect (or reconnect) the demo connection to a running sandbox, as a user would."""

    @abc.abstractmethod
    def demo_runs(self, connection: Connection, days: int) -> list[DemoRun]:
        """The runs `dfx demo` launches for this connector's demo connection (daily metrics: last `days`)."""

    @abc.abstractmethod
    def revoke_at_provider(self, platform: Platform, connection: Connection) -> RevocationResult:
        """Invalidate the connection's credentials at the provider, where it offers that."""

    # ------------------------------------------------------------------ optional, with their defaults

    @property
    def pool(self) -> str:
        """The Dagster concurrency pool of this connector's API: its kind (one pool per vendor API)."""
        return self.kind

    @property
    def partitions_name(self) -> str:
        """The dynamic partitions (one key per connection) its assets use; kept in step with the
        registry by the platform and deleted with a connection."""
        from dfx_pipelines.platform.partitions import connection_partitions_name

        return connection_partitions_name(self.kind)

    def validate_source_field(self, value: str) -> str:
        """A field-mapper source (`FieldMapping.source`) checked by the kind's identifier rules.
        Default: the kind has no field mapper, so any mapping is refused."""
        raise ValueError(f"{self.kind} connections have no field mapper (source {value!r})")

    def validate_write_back(
        self, designations: Sequence[WriteBackDesignation], selection: SelectionBase, endpoint: Mapping[str, Any]
    ) -> None:
        """Check the fields the customer allowed us to write to. Default: write-back is not supported."""
        if designations:
            raise ValueError(f"write-back is not supported for {self.kind} connections")

    def cli_commands(self) -> list[click.Command]:
        """Connector-specific `dfx` subcommands. A group with a `connect` command also becomes
        `dfx connect <kind>`."""
        return []

    def connect_command(self, sandbox: RunningSandbox, *, workspace_id: str, folder: Path) -> ConnectCommand | None:
        """How a user connects to a sandbox started by `start_sandbox` (files it needs go under `folder`,
        mode 0600); `dfx sandbox serve` prints it. None: no hand-typed connect for this kind."""
        return None

    def delete_cached_data(self, platform: Platform, connection: Connection) -> dict[str, int]:
        """Delete what this connector keeps outside the metric store and the vault (deleted by the
        lifecycle): table name -> rows deleted. Default: it keeps nothing else."""
        return {}
