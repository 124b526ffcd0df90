"""The `dfx` command: the demo, local development, sandboxes, connections, metrics and the vault.

Every command works on the embedded default with no variable set (everything under ./.dfx/); the
same commands run against production when DFX_* and DAGSTER_HOME point there.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from dfx_pipelines.platform.errors import DfxError
from dfx_pipelines.platform.redaction import RedactingFormatter, install_redaction
from dfx_pipelines.platform.settings import Settings

DEMO_WORKSPACE = "demo"


def _setup_logging(verbose: bool) -> None:
    install_redaction()
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.WARNING)
    logging.getLogger("dfx_pipelines").setLevel(logging.DEBUG if verbose else logging.INFO)


def embedded_dagster_home(settings: Settings) -> Path:
    """DAGSTER_HOME for the embedded default: Dagster's default SQLite storage under .dfx/."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    from dfx_pipelines.platform.instance import write_embedded_instance

    home = settings.home / "dagster_home"
    write_embedded_instance(home)  # run monitoring, retries and run concurrency, as in production
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _host_and_port(url: str) -> str | None:
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or {"https": 443, "http": 80}.get(parts.scheme)
    except ValueError:
        return None
    return f"{parts.hostname}:{port}" if parts.hostname else None


def describe_failure(exc: BaseException) -> tuple[int, str]:
    """(exit status, one line) for anything a command raised: the project's errors say what is wrong
    already; a network error names the host it could not reach (never the URL, whose query may carry an
    OAuth `state` or code); anything else is named by its type. Secrets are masked and query strings cut."""
    import re

    import requests
    import urllib3

    from dfx_pipelines.platform.redaction import redact

    if isinstance(exc, DfxError):
        code, text = exc.exit_code, str(exc)
    elif isinstance(exc, requests.RequestException):
        request = getattr(exc, "request", None)
        where = _host_and_port(getattr(request, "url", None) or "") or "the remote host"
        code, text = 1, f"cannot reach {where} ({type(exc).__name__})"
    elif isinstance(exc, urllib3.exceptions.HTTPError):  # raised past requests by a retry that gave up
        endpoint = getattr(exc, "conn", None) or getattr(exc, "pool", None)
        host, port = getattr(endpoint, "host", None), getattr(endpoint, "port", None)
        where = f"{host}:{port}" if host else "the remote host"
        code, text = 1, f"cannot reach {where} ({type(exc).__name__})"
    else:
        code, text = 1, f"unexpected {type(exc).__name__}: {exc} (run with -v for the traceback)"
    text = re.sub(r"(https?://[^\s'\"?]*)\?[^\s'\")]*", r"\1?…", redact(text))
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(exc).__name__]
    return code, " ".join(lines)[:500]


class _CliGroup(click.Group):
    """Every command's failure is one line on stderr and a status: 2 for bad input, 1 for an operation
    that failed. No traceback unless -v (and then still redacted); no secret or OAuth state either way."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.ClickException as exc:  # usage errors too: one line, not click's three
            hint = f" (see '{exc.ctx.command_path} --help')" if isinstance(exc, click.UsageError) and exc.ctx else ""
            click.echo(f"error: {exc.format_message()}{hint}", err=True)
            sys.exit(exc.exit_code)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        sys.exit(result if isinstance(result, int) else 0)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort, KeyboardInterrupt):
            raise
        except Exception as exc:  # noqa: BLE001 - the CLI's error contract: every failure is one line and an exit code
            code, line = describe_failure(exc)
            if ctx.params.get("verbose"):
                import traceback

                from dfx_pipelines.platform.redaction import redact

                click.echo(redact(traceback.format_exc()), err=True)
            click.echo(f"error: {line}", err=True)
            ctx.exit(code)


@click.group(cls=_CliGroup)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging and tracebacks (still redacted).")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """DataFlow-Xpert pipelines."""
    from dfx_pipelines.platform.cli_input import check_settings

    _setup_logging(verbose)
    if ctx.invoked_subcommand != "doctor":  # the doctor's job is to report bad settings, not to stop at one
        check_settings(Settings.from_env())  # every other command checks them before it touches a store


# ------------------------------------------------------------------ demo and local development


def _start_demo(scale: int | None, kinds: tuple[str, ...] = ()) -> tuple[Any, list[tuple[Any, Any, Any]]]:
    from dfx_pipelines.connectors import plugins
    from dfx_pipelines.platform.registry import Workspace
    from dfx_pipelines.platform.sandbox import SandboxCA
    from dfx_pipelines.platform.services import get_platform

    settings = Settings.from_env()
    if not settings.sandbox_allowed:
        raise click.UsageError("the demo runs on sandboxes, which DFX_MODE=production refuses")
    embedded_dagster_home(settings)
    _apply_pools()  # each connector's API pool limit, as production's startup step writes it
    platform = get_platform(settings)
    platform.registry.upsert_workspace(
        Workspace(id=DEMO_WORKSPACE, name="Demo workspace", owner_email="owner@demo.dataflow-xpert.test")
    )
    registered = plugins()
    unknown = sorted(set(kinds) - {connector.kind for connector in registered})
    if unknown:
        known = ", ".join(connector.kind for connector in registered)
        raise click.UsageError(f"--connector {', '.join(unknown)}: not a registered connector ({known})")
    ca = SandboxCA(settings.sandbox_dir)
    started = []
    for connector in registered:
        if kinds and connector.kind not in kinds:
            continue
        sandbox = connector.start_sandbox(ca, scale=scale)
        connection = connector.connect_demo(platform, sandbox, DEMO_WORKSPACE)
        click.echo(
            f"{connector.kind}: sandbox at {', '.join(s.url for s in sandbox.servers)}; connection {connection.id}"
        )
        started.append((connector, sandbox, connection))
    return platform, started


@main.command()
@click.option(
    "--scale", type=int, default=None, help="Size of the sandbox data (connector-specific; default demo size)."
)
@click.option(
    "--days",
    type=click.IntRange(1, 366),
    default=30,
    show_default=True,
    help="Daily metrics for this many recent days.",
)
@click.option(
    "--connector",
    "kinds",
    multiple=True,
    help="Only this connector kind (repeatable); default: every registered connector.",
)
def demo(scale: int | None, days: int, kinds: tuple[str, ...]) -> None:
    """Start the sandboxes, connect the demo workspace and run every connector's sync job once."""
    import dagster as dg

    from dfx_pipelines.definitions import defs
    from dfx_pipelines.platform import catalogue
    from dfx_pipelines.platform.partitions import sync_partitions

    platform, started = _start_demo(scale, kinds)
    failures = 0
    try:
        with dg.DagsterInstance.get() as instance:
            sync_partitions(instance, platform.registry, catalogue.kinds())
            for connector, _sandbox, connection in started:
                for run in connector.demo_runs(connection, days):
                    job = defs.resolve_job_def(run.job_name)
                    began = time.monotonic()
                    result = job.execute_in_process(
                        instance=instance,
                        partition_key=run.partition_key,
                        tags=run.tags,
                        raise_on_error=False,
                        run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
                    )
                    status = "succeeded" if result.success else "FAILED"
                    failures += not result.success
                    where = (
                        run.partition_key
                        or f"{run.tags.get('dagster/asset_partition_range_start')} .. {run.tags.get('dagster/asset_partition_range_end')}"
                    )
                    click.echo(
                        f"{job.name} [{where}] {status} in {time.monotonic() - began:.1f}s (run {result.run_id})"
                    )
    finally:
        for _connector, sandbox, _connection in started:
            sandbox.stop()
    _print_summary(platform.metric_store.batches())
    click.echo(f"\nEverything lives in {platform.settings.home}. Open the UI with: dfx dev")
    if failures:
        sys.exit(1)


@main.command()
@click.option("--port", default=3000, show_default=True)
def dev(port: int) -> None:
    """Start the sandboxes, connect the demo workspace, then run the Dagster UI against them."""
    _platform, started = _start_demo(None)
    click.echo(f"Dagster UI on http://127.0.0.1:{port} (Ctrl-C stops it and the sandboxes)")
    from dfx_pipelines.platform.process_group import run_in_own_group

    dagster = Path(sys.executable).with_name("dagster")
    try:
        # Ctrl-C or SIGTERM ends the webserver, the daemon and their code servers (their process group).
        run_in_own_group([str(dagster), "dev", "-w", "workspace.yaml", "-p", str(port)])
    finally:
        for _connector, sandbox, _connection in started:
            sandbox.stop()


def _apply_pools() -> dict[str, int]:
    import dagster as dg

    from dfx_pipelines.platform.instance_concurrency import apply_pool_limits

    with dg.DagsterInstance.get() as instance:
        return apply_pool_limits(instance)


@main.group()
def instance() -> None:
    """The Dagster instance (DAGSTER_HOME; the embedded default when unset)."""


@instance.command("apply-pools")
def instance_apply_pools() -> None:
    """Write each registered connector's API pool limit into the instance's storage. Production runs this
    before starting the daemon (idempotent); `dfx dev`/`dfx demo` do it themselves."""
    embedded_dagster_home(Settings.from_env())
    for pool, limit in sorted(_apply_pools().items()):
        click.echo(f"pool {pool}: {limit} concurrent step(s)")


@main.group()
def sandbox() -> None:
    """Local HTTPS servers that play the SaaS APIs."""


SANDBOX_WORKSPACE = "sandbox"


@sandbox.command("serve")
@click.option(
    "--fault", "faults", multiple=True, help="Inject a fault, e.g. rate_limit:count=3,retry_after=1 (repeatable)."
)
@click.option("--scale", type=int, default=None, help="Size of the sandbox data (connector-specific).")
@click.option(
    "--jira-flavour",
    type=click.Choice(["cloud", "datacenter"]),
    default="cloud",
    show_default=True,
    help="Serve Jira Cloud (OAuth 3LO) or Jira Data Center (personal access token).",
)
def sandbox_serve(faults: tuple[str, ...], scale: int | None, jira_flavour: str) -> None:
    """Serve every connector's sandbox (and the echo server) in the foreground, and print for each a
    ready-to-paste `dfx connect` command with the credentials it accepts."""
    from dfx_pipelines.platform.sandbox import Faults

    rules = [Faults.parse(spec) for spec in faults]  # a malformed spec fails before anything starts
    settings = Settings.from_env()
    if not settings.sandbox_allowed:
        raise click.UsageError("the sandboxes are refused in DFX_MODE=production (clients there never trust them)")
    servers, running = _serve_sandboxes(settings, scale, jira_flavour)
    try:
        for server in servers + [s for r in running for s in r.servers]:
            for rule in rules:
                server.faults.inject(
                    rule.kind,
                    count=rule.count,
                    probability=rule.probability,
                    path_prefix=rule.path_prefix,
                    retry_after=rule.retry_after,
                    status=rule.status,
                    delay=rule.delay,
                )
            click.echo(f"{server.app.name:12s} {server.url}")
        click.echo(f"CA certificate: {settings.sandbox_dir / 'sandbox-ca.pem'}  (Ctrl-C to stop)")
        _print_connect_commands(settings, running)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        for item in servers + running:
            item.stop()


def _serve_sandboxes(settings: Settings, scale: int | None, jira_flavour: str) -> tuple[list[Any], list[Any]]:
    from dfx_pipelines.connectors import plugins
    from dfx_pipelines.platform.sandbox import EchoApp, SandboxCA, SandboxServer

    ca = SandboxCA(settings.sandbox_dir)
    servers = [SandboxServer(EchoApp(token="echo-sandbox-token"), ca=ca).start()]
    running = []
    try:
        for connector in plugins():
            options = {"flavour": jira_flavour} if connector.kind == "jira" else {}
            running.append(connector.start_sandbox(ca, scale=scale, **options))
    except BaseException:
        for item in servers + running:
            item.stop()
        raise
    return servers, running


def _print_connect_commands(settings: Settings, running: list[Any]) -> None:
    """Each sandbox's connect command, run from the same folder (or with the same DFX_HOME) as this one."""
    from dfx_pipelines.connectors import plugin

    click.echo(f"\nConnect by hand (same DFX_HOME={settings.home}, another terminal):")
    click.echo(f"  dfx workspace create {SANDBOX_WORKSPACE} --name 'Sandbox workspace' --owner-email you@example.test")
    for item in running:
        command = plugin(item.kind).connect_command(item, workspace_id=SANDBOX_WORKSPACE, folder=settings.sandbox_dir)
        if command is not None:
            click.echo(f"  {command.shell()}")
    sys.stdout.flush()


@main.command()
def doctor() -> None:
    """Report, in one screen, every variable the pipeline reads and what is missing or inconsistent
    (exit 1 when production would not work)."""
    from dfx_pipelines.platform.environment import report

    lines, failed = report()
    for line in lines:
        click.echo(line)
    if failed:
        sys.exit(1)


# ------------------------------------------------------------------ workspaces and connecting


@main.group()
def workspace() -> None:
    """Customers' workspaces."""


@workspace.command("create")
@click.argument("workspace_id")
@click.option("--name", required=True)
@click.option("--owner-email", required=True, help="Where sync-error notifications go.")
def workspace_create(workspace_id: str, name: str, owner_email: str) -> None:
    from pydantic import ValidationError

    from dfx_pipelines.platform.errors import ConfigError
    from dfx_pipelines.platform.registry import Workspace
    from dfx_pipelines.platform.services import get_platform

    try:
        created = Workspace(id=workspace_id, name=name, owner_email=owner_email)
    except ValidationError as exc:
        raise ConfigError(
            "invalid workspace: " + "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors())
        ) from None
    get_platform().registry.upsert_workspace(created)
    click.echo(f"workspace {workspace_id} ready")


@workspace.command("close")
@click.argument("workspace_id")
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"), help="Recorded in the audit.")
def workspace_close(workspace_id: str, actor: str) -> None:
    """Account closure: every connection of the workspace is removed now; the deletion job erases their data."""
    from dfx_pipelines.connectors import plugin
    from dfx_pipelines.lifecycle.revocation import close_workspace
    from dfx_pipelines.platform.services import get_platform

    click.echo(close_workspace(get_platform(), workspace_id, plugin, actor=actor).summary())


@main.group()
def connect() -> None:
    """Connect a source: credentials go straight into the vault."""


# ------------------------------------------------------------------ connections, metrics, vault


@main.group()
def connections() -> None:
    """The connection registry."""


@connections.command("list")
@click.option("--json", "as_json", is_flag=True)
def connections_list(as_json: bool) -> None:
    from dfx_pipelines.platform.services import get_platform

    rows = [
        {"id": c.id, "workspace": c.workspace_id, "kind": c.kind, "name": c.display_name, "status": c.status.value}
        for c in get_platform().registry.list()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(f"{row['id']:24s} {row['kind']:10s} {row['status']:8s} {row['workspace']:12s} {row['name']}")
    if not rows:
        click.echo("no connections")


def _lifecycle_action(connection_id: str, remove: bool, actor: str) -> None:
    from dfx_pipelines.connectors import plugin
    from dfx_pipelines.lifecycle.revocation import revoke_connection
    from dfx_pipelines.platform.services import get_platform

    platform = get_platform()
    connection = platform.registry.get(connection_id)
    click.echo(
        revoke_connection(platform, plugin(connection.kind), connection.id, remove=remove, actor=actor).summary()
    )


@connections.command("revoke")
@click.argument("connection_id")
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"), help="Recorded in the audit.")
def connections_revoke(connection_id: str, actor: str) -> None:
    """Revoke now: provider revocation, credentials and data key destroyed, syncs stop."""
    _lifecycle_action(connection_id, False, actor)


@connections.command("remove")
@click.argument("connection_id")
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"), help="Recorded in the audit.")
def connections_remove(connection_id: str, actor: str) -> None:
    """Remove now (revocation included); its cached data is deleted by the next deletion run."""
    _lifecycle_action(connection_id, True, actor)


@connections.command("delete-due")
@click.option("--grace-days", type=click.IntRange(0, 30), default=0, show_default=True)
@click.option("--actor", default=lambda: os.environ.get("USER", "cli"))
def connections_delete_due(grace_days: int, actor: str) -> None:
    """Run the deletion now for removed connections past their grace period."""
    from datetime import timedelta

    import dagster as dg

    from dfx_pipelines.connectors import plugin
    from dfx_pipelines.lifecycle.deletion import delete_connection_data, due_for_deletion
    from dfx_pipelines.platform.services import get_platform

    platform = get_platform()
    embedded_dagster_home(platform.settings)
    due = due_for_deletion(platform, grace=timedelta(days=grace_days))
    with dg.DagsterInstance.get() as instance:
        for connection in due:
            report = delete_connection_data(platform, plugin(connection.kind), instance, connection.id, actor=actor)
            click.echo(
                f"deleted {connection.id}: {report.metric_values_deleted} metric values, {report.runs_deleted} runs, data key {report.data_key_id or '-'} ({report.seconds}s)"
            )
    if not due:
        click.echo("nothing is due for deletion")


@main.group()
def metrics() -> None:
    """Aggregated results in the metric store."""


def _print_metrics(rows: list[dict[str, Any]], *, as_json: bool, limit: int | None = None) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no metrics stored")
        return
    shown = rows if limit is None else rows[:limit]
    click.echo(f"{'connection':16s} {'metric':26s} {'period':10s} {'measure':22s} {'dimensions':30s} value")
    for row in shown:
        dims = ",".join(f"{k}={v}" for k, v in row["dimensions"].items())
        value = "" if row["value"] is None else f"{row['value']:.4g}"
        click.echo(
            f"{row['connection_id']:16s} {row['metric']:26s} {row['period'] or ''!s:10s} {row['measure']:22s} {dims[:30]:30s} {value}"
        )
    if len(shown) < len(rows):
        click.echo(f"... {len(rows) - len(shown)} more rows (dfx metrics show)")


def _print_summary(batches: list[dict[str, Any]]) -> None:
    """Per connection and metric: partitions written, rows, records and bytes read, API calls."""
    totals: dict[tuple[str, str], list[int]] = {}
    for batch in batches:
        row = totals.setdefault((batch["connection_id"], batch["metric"]), [0, 0, 0, 0, 0])
        for index, key in enumerate(("row_count", "records_read", "bytes_read", "api_calls")):
            row[index + 1] += batch[key] or 0
        row[0] += 1
    click.echo(
        f"\n{'connection':14s} {'metric':28s} {'partitions':>10s} {'rows':>6s} {'records':>8s} {'bytes':>10s} {'calls':>6s}"
    )
    for (connection, metric), (partitions, rows, records, bytes_, calls) in sorted(totals.items()):
        click.echo(f"{connection:14s} {metric:28s} {partitions:10d} {rows:6d} {records:8d} {bytes_:10d} {calls:6d}")
    click.echo("See the values with: dfx metrics show [--connection ID] [--metric NAME] [--json]")


@metrics.command("show")
@click.option("--connection", "connection_id", default=None, help="Only this connection.")
@click.option("--metric", default=None, help="Only this metric.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def metrics_show(connection_id: str | None, metric: str | None, as_json: bool) -> None:
    """Print stored metric rows."""
    from dfx_pipelines.platform.services import get_platform

    platform = get_platform()
    if connection_id is not None:
        platform.registry.get(connection_id)  # an unknown id is an error, not an empty list
    _print_metrics(platform.metric_store.read(connection_id=connection_id, metric=metric), as_json=as_json)


@main.group()
def vault() -> None:
    """The secrets store."""


@vault.command("rotate-master-key")
def vault_rotate_master_key() -> None:
    """Re-wrap every connection's data key under a new master key (secrets are not touched).

    With the local key file (embedded default) a new key is generated, then the old one retired.
    With DFX_MASTER_KEY, put the new key first (`new:<b64>,old:<b64>`), run this, then drop the old one.
    """
    from dfx_pipelines.platform.services import build_vault

    settings = Settings.from_env()
    store = build_vault(settings)
    old_id = store.keyring.active_id
    if os.environ.get("DFX_MASTER_KEY"):
        count = store.rotate_master_key(store.keyring)
        click.echo(
            f"re-wrapped {count} data keys under {store.keyring.active_id}; you may now remove the other keys from DFX_MASTER_KEY"
        )
        return
    original = store.keyring
    rotated = original.with_new_active_key()
    # The new key goes on disk *beside* the old one, the old one still active: a crash at any point
    # leaves every data key readable. Only once all are re-wrapped and verified does the new key become
    # the active one; a failure puts the key file back as it was (the vault restores its records).
    from dfx_pipelines.platform.vault import MasterKeyring

    MasterKeyring(keys={**original.keys, rotated.active_id: rotated.active_key}, active_id=original.active_id).save(
        settings.master_key_file
    )
    try:
        count = store.rotate_master_key(rotated)
    except BaseException:
        original.save(settings.master_key_file)
        raise
    rotated.retiring_all_but_active().save(settings.master_key_file)
    click.echo(f"re-wrapped {count} data keys: master key {old_id} -> {rotated.active_id} (old key retired)")


def _add_connector_commands() -> None:
    """Connectors contribute their own command groups (`dfx bigquery approve`, ...) through their plugin."""
    from dfx_pipelines.connectors import plugins

    for connector in plugins():
        for command in connector.cli_commands():
            main.add_command(command)
            # `dfx connect <kind>` too, the one place a data engineer looks for how to connect a source.
            if isinstance(command, click.Group) and "connect" in command.commands:
                connect.add_command(command.commands["connect"], name=connector.kind)


_add_connector_commands()


def _add_lifecycle_commands() -> None:
    from dfx_pipelines.lifecycle.cli import requests_group

    main.add_command(requests_group)


_add_lifecycle_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
