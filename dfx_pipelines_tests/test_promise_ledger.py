"""The promise ledger stays honest: every id once, every listed test exists, statuses are known."""

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STATUSES = {"proven", "partial", "open", "n/a"}


def ledger_rows() -> dict[str, tuple[str, list[str]]]:
    rows: dict[str, tuple[str, list[str]]] = {}
    for line in (REPO / "PROMISES.md").read_text().splitlines():
        match = re.match(r"^\|\s*(P\d+)\s*\|\s*([^|]*?)\s*\|\s*(.*?)\s*\|$", line)
        if match:
            promise, status, tests = match.groups()
            assert promise not in rows, f"{promise} is listed twice"
            rows[promise] = (status, [t.strip() for t in tests.split("<br>") if "::" in t])
    return rows


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")
    }


def test_every_promise_is_listed_once_with_a_known_status() -> None:
    rows = ledger_rows()
    assert sorted(rows, key=lambda p: int(p[1:])) == [f"P{n}" for n in range(1, 36)]
    for promise, (status, tests) in rows.items():
        assert status in STATUSES, f"{promise}: unknown status {status!r}"
        if status in ("proven", "partial"):
            assert tests, f"{promise} is {status} but names no test"
        if status == "open":
            assert not tests, f"{promise} names tests but is marked open"


def test_every_listed_test_exists() -> None:
    for promise, (_status, tests) in ledger_rows().items():
        for reference in tests:
            path, _, name = reference.partition("::")
            file = REPO / path
            assert file.is_file(), f"{promise}: {path} does not exist"
            assert name in functions_in(file), f"{promise}: {reference} does not exist"
