"""The parsed shape of a SOQL query (what the parser builds and the compiler reads)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

AGGREGATES = frozenset({"COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX"})
DATE_FUNCTIONS = frozenset({
    "CALENDAR_YEAR", "CALENDAR_QUARTER", "CALENDAR_MONTH", "DAY_IN_MONTH", "DAY_IN_WEEK", "DAY_IN_YEAR",
    "DAY_ONLY", "HOUR_IN_DAY", "WEEK_IN_YEAR", "FISCAL_YEAR", "FISCAL_QUARTER",
})  # fmt: skip


@dataclass(frozen=True)
class FieldRef:
    path: tuple[str, ...]
    pos: int

    @property
    def key(self) -> str:
        return ".".join(self.path).lower()


@dataclass(frozen=True)
class FuncCall:
    name: str  # upper case
    arg: FieldRef | None  # None only for COUNT()
    pos: int

    @property
    def is_aggregate(self) -> bool:
        return self.name in AGGREGATES

    @property
    def key(self) -> str:
        return f"{self.name}({self.arg.key if self.arg else ''})"


Expr = FieldRef | FuncCall


@dataclass(frozen=True)
class Literal:
    kind: str  # string number boolean null date datetime dateliteral
    value: Any
    pos: int
    like_pattern: str = ""
    n: int | None = None  # for LAST_N_DAYS:n and friends


@dataclass(frozen=True)
class Comparison:
    left: Expr
    op: str  # = != < <= > >= LIKE IN NOT IN INCLUDES EXCLUDES
    right: Literal | tuple[Literal, ...]
    pos: int


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND or OR
    items: tuple[Condition, ...]


@dataclass(frozen=True)
class Not:
    item: Condition


Condition = Comparison | BoolOp | Not


@dataclass(frozen=True)
class SelectItem:
    expr: Expr
    alias: str | None
    pos: int


@dataclass(frozen=True)
class OrderItem:
    expr: Expr
    descending: bool
    nulls_last: bool | None
    pos: int


@dataclass
class Query:
    text: str
    select: list[SelectItem]
    object_name: str
    object_pos: int
    object_alias: str | None = None
    where: Condition | None = None
    group_by: list[Expr] = field(default_factory=list)
    having: Condition | None = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int | None = None
