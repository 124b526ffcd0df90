"""`python -m bench [name ...]`: run the named benchmarks (all by default) and print their figures."""

import importlib
import sys

BENCHMARKS = {
    "lifecycle_deletion": "bench.lifecycle_deletion",
    "load_time": "bench.load_time",
    "salesforce_sync": "bench.salesforce_sync",
    "bigquery_gate": "bench.bigquery_gate",
    "bigquery_backfill": "bench.bigquery_backfill",
    "jira_sync": "bench.jira_sync",
    "ui_runs": "bench.ui_runs",
    "warehouse_sync": "bench.warehouse_sync",
    "scale": "bench.scale",
}


def main(argv: list[str]) -> None:
    names = argv or list(BENCHMARKS)
    for name in names:
        if name not in BENCHMARKS:
            raise SystemExit(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}")
        print(f"\n=== {name} ===", flush=True)
        importlib.import_module(BENCHMARKS[name]).main()


if __name__ == "__main__":
    main(sys.argv[1:])
