"""Finding a deleted connection's runs: every kind of run that ran for it goes, and only those — read
through Dagster's run filters on the connection's tags, never by reading other connections' runs.

The kinds of run a connection has: ours (tagged `dfx/connection` by schedules, sensors, the CLI), and
those Dagster launches from the UI or a backfill, which carry only Dagster's partition tags: a
connection-only asset's `dagster/partition`, a daily asset's `dagster/partition/connection`, a single-run
backfill's range (`connection|day` .. `connection|day`), and a `dagster/partition` of `connection|day`
without its dimension tags. Each kind exists for the deleted connection and for two others, one of
whose id begins with the deleted one's (sf-acme-2 is not sf-acme)."""

import uuid
from datetime import date
from typing import Any

import dagster as dg
import pytest

from dfx_pipelines.lifecycle import deletion
from dfx_pipelines.lifecycle.deletion import run_is_for

GONE, OTHERS = "sf-acme", ("sf-beta", "sf-acme-2")
DAY = "2026-11-15"
FIRST_DAY = date(2026, 10, 1)  # the earliest day the connection's runs may name (its partitions' first day)

connections = dg.DynamicPartitionsDefinition(name="salesforce_connections")
connection_days = dg.MultiPartitionsDefinition(
    {"connection": connections, "date": dg.DailyPartitionsDefinition(start_date="2026-11-01")}
)


@dg.asset(partitions_def=connections, key_prefix=["salesforce"])
def snapshot_metric() -> None:
    pass


@dg.asset(partitions_def=connection_days, key_prefix=["salesforce"])
def daily_metric() -> None:
    pass


@dg.op
def sync() -> None:
    pass


@dg.job(executor_def=dg.in_process_executor)
def tagged_sync() -> None:
    sync()


def _runs_of(instance: dg.DagsterInstance, slug: str) -> set[str]:
    """Launch one run of every kind for `slug`; returns their ids."""
    ids = set()
    # Ours: the schedules' and sensors' tag.
    ids.add(tagged_sync.execute_in_process(instance=instance, tags={"dfx/connection": slug}).run_id)
    # Dagster's, from the UI: a connection-only partition, and a connection's day of a daily asset.
    ids.add(dg.materialize([snapshot_metric], partition_key=slug, instance=instance).run_id)
    day_key = dg.MultiPartitionKey({"connection": slug, "date": DAY})
    ids.add(dg.materialize([daily_metric], partition_key=day_key, instance=instance).run_id)
    # Runs that hold only a `connection|day` value (a single-run backfill's range, a partition tag without
    # its dimensions), as the backfill daemon writes them: before any step ran (nothing materialized
    # that the event log could find them by).
    for tags in (
        {
            "dagster/asset_partition_range_start": f"{slug}|2026-11-01",
            "dagster/asset_partition_range_end": f"{slug}|{DAY}",
        },
        {"dagster/partition": f"{slug}|{DAY}"},
    ):
        run = dg.DagsterRun(job_name="__ASSET_JOB", run_id=str(uuid.uuid4()), tags={"dagster/backfill": "b1", **tags})
        ids.add(instance.add_run(run).run_id)
    return ids


class _RunStorageReads:
    """Every run and tag value the run storage hands out, recorded at its edge."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, storage: Any) -> None:
        self.runs: list[dg.DagsterRun] = []
        self.tag_values: list[str] = []
        self.recording = True
        for name in ("get_runs", "get_run_records", "get_run_ids", "get_run_tags"):
            monkeypatch.setattr(storage, name, self._recording(name, getattr(storage, name)))

    def _recording(self, name: str, original: Any) -> Any:
        def read(*args: Any, **kwargs: Any) -> Any:
            result = original(*args, **kwargs)
            if not self.recording:
                return result
            if name == "get_run_tags":
                self.tag_values += [value for _, values in result for value in values]
            elif name == "get_run_ids":
                self.runs += [run for run_id in result if (run := original.__self__.get_run_by_id(run_id))]
            else:
                self.runs += [item.dagster_run if isinstance(item, dg.RunRecord) else item for item in result]
            return result

        return read


def test_deletes_every_kind_of_run_of_the_connection_and_reads_no_other(tmp_path, monkeypatch) -> None:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        instance.add_dynamic_partitions(connections.name, [GONE, *OTHERS])
        gone = _runs_of(instance, GONE)
        kept = {slug: _runs_of(instance, slug) for slug in OTHERS}
        assert len(gone) == 5 and all(len(ids) == 5 for ids in kept.values())
        assert all(run_is_for(instance.get_run_by_id(run_id).tags, GONE) for run_id in gone)

        reads = _RunStorageReads(monkeypatch, instance.run_storage)
        assert deletion._delete_runs(instance, GONE, FIRST_DAY) == 5
        reads.recording = False

        # Exactly the connection's runs are gone; the others' are all there.
        remaining = {record.dagster_run.run_id for record in instance.get_run_records()}
        assert remaining.isdisjoint(gone)
        assert remaining == kept["sf-beta"] | kept["sf-acme-2"]
        # Everything the deletion read from run storage was the deleted connection's.
        assert reads.runs and all(run_is_for(run.tags, GONE) for run in reads.runs), [
            run.tags for run in reads.runs if not run_is_for(run.tags, GONE)
        ]
        assert {run.run_id for run in reads.runs} == gone
        assert reads.tag_values == []  # no listing of tag values either (it would read other runs' tags)
        # Done: a second deletion finds nothing.
        assert deletion._delete_runs(instance, GONE, FIRST_DAY) == 0


def test_each_filter_names_the_connection_exactly(tmp_path) -> None:
    """The filters are exact matches on values that name the connection (its id, or `id|day` for every
    day from the first one on): none on a value another connection, or a longer id, could have; and
    the lookup reads no run or tag to build them."""
    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        filters = deletion.connection_run_filters(instance, GONE, FIRST_DAY)
        values = {
            (key, value)
            for runs_filter in filters
            for key, wanted in runs_filter.tags.items()
            for value in ([wanted] if isinstance(wanted, str) else wanted)
        }
        assert {(key, value) for key, value in values if "|" not in value} == {
            ("dfx/connection", GONE),
            ("dagster/partition", GONE),
            ("dagster/partition/connection", GONE),
        }
        days = {value for _, value in values if "|" in value}
        assert all(value.split("|")[0] == GONE for value in days)
        assert {(key, f"{GONE}|{day}") for key in deletion._RANGE_TAGS for day in ("2026-10-01", DAY)} <= values
        assert (f"{GONE}|2026-09-30") not in days and f"{GONE}|{date.today().isoformat()}" in days


def test_only_the_adapter_reaches_into_private_dagster_modules() -> None:
    """Deletion, tick history and compaction use Dagster's private modules only through
    `lifecycle/dagster_private.py`, whose every function names the public API it stands in for."""
    import ast
    from pathlib import Path

    import dfx_pipelines.lifecycle as lifecycle

    folder = Path(lifecycle.__file__).parent
    private = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        names = [
            name
            for node in ast.walk(tree)
            for name in (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
        ]
        private[path.name] = sorted(n for n in names if n.startswith("dagster._"))
    assert private["dagster_private.py"]  # the check sees the imports it looks for
    assert {name for name, found in private.items() if found} - {"notifications.py"} == {"dagster_private.py"}
    adapter = ast.parse((folder / "dagster_private.py").read_text())
    for function in (node for node in adapter.body if isinstance(node, ast.FunctionDef)):
        if not function.name.startswith("_") and function.name != "check_tick_storage":
            doc = " ".join((ast.get_docstring(function) or "").split())
            assert "Missing public API" in doc and "1.13.27" in doc, function.name
