"""The customer's Salesforce selection (object API name → selected field API names) and what each metric
needs from it, so a query is only ever built over objects and fields the customer chose.
`SalesforceSelection` is the stored model the registry validates (the plugin's `selection_model`);
`Selection` is the immutable, case-insensitive view queries are built from.

Pure: no I/O, no client library. Every name is checked again with `dfx_pipelines.platform.identifiers`
(defence in depth: the selection was validated upstream, but a name only reaches SOQL through here).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import Field, field_validator

from dfx_pipelines.platform.errors import ConfigError
from dfx_pipelines.platform.identifiers import salesforce_field_path, salesforce_name
from dfx_pipelines.platform.registry import SelectionBase, unique_entries

# Every object has Id, and COUNT(Id) returns a number, never an Id value, so aggregate queries may count
# it without the customer selecting it. Streamed queries never select it (they do not need it).
IMPLICIT_FIELDS = frozenset({"Id"})


class SalesforceSelection(SelectionBase):
    """A Salesforce connection's selection as stored: `objects` = object API name -> field API names."""

    objects: dict[str, list[str]] = Field(default_factory=dict)

    @field_validator("objects")
    @classmethod
    def _no_duplicates(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        return unique_entries(value)

    def check(self, endpoint: Mapping[str, Any]) -> None:
        for obj, fields in self.objects.items():
            salesforce_name(obj)
            for field in fields:
                salesforce_field_path(field)


class SelectionError(ConfigError):
    """A metric needs an object or fields the customer did not select (or the selection is malformed)."""


class Selection:
    """An immutable, validated selection. Salesforce API names are case-insensitive, so lookups are too;
    queries always spell names as the metric definitions do, never as the selection happens to."""

    __slots__ = ("_fields", "_index")

    def __init__(self, objects: Mapping[str, Iterable[str]]) -> None:
        if not isinstance(objects, Mapping):
            raise SelectionError(f"a selection must map object names to field names, not {type(objects).__name__}")
        fields: dict[str, frozenset[str]] = {}
        index: dict[str, frozenset[str]] = {}
        for object_name, object_fields in objects.items():
            salesforce_name(object_name)
            # A bare string is iterable too: "Amount" would silently become {"A", "m", ...}.
            if isinstance(object_fields, (str, bytes)) or not isinstance(object_fields, Iterable):
                raise SelectionError(
                    f"the selected fields of {object_name} must be a collection of field names, "
                    f"not {type(object_fields).__name__}"
                )
            names = frozenset(salesforce_field_path(name) for name in object_fields)
            if object_name.casefold() in index:
                raise SelectionError(f"object {object_name} is selected twice (names are case-insensitive)")
            fields[object_name] = names
            index[object_name.casefold()] = frozenset(name.casefold() for name in names)
        self._fields = MappingProxyType(fields)
        self._index = MappingProxyType(index)

    @classmethod
    def of(cls, selection: Selection | Mapping[str, Iterable[str]]) -> Selection:
        """The selection itself if already validated, otherwise a validated copy of the mapping."""
        return selection if isinstance(selection, Selection) else cls(selection)

    @property
    def objects(self) -> Mapping[str, frozenset[str]]:
        return self._fields

    def has_object(self, object_name: str) -> bool:
        return object_name.casefold() in self._index

    def has_field(self, object_name: str, field: str) -> bool:
        return field.casefold() in self._index.get(object_name.casefold(), frozenset())

    def __repr__(self) -> str:
        return f"Selection({ {name: sorted(fields) for name, fields in self._fields.items()}!r})"


@dataclass(frozen=True)
class OptionalDimension:
    """A breakdown a metric adds when the customer selected a field for it; the first selected candidate
    wins (e.g. the milestone type's name, else its Id)."""

    dimension: str  # the MetricRow dimension name, e.g. "milestone_type"
    candidates: tuple[str, ...]  # field paths on the metric's object, in order of preference


@dataclass(frozen=True)
class MetricFields:
    """The one object a metric reads and the fields it needs there (filters, groupings, measures)."""

    metric: str
    object_name: str
    required: frozenset[str]
    optional: tuple[OptionalDimension, ...] = ()
    # Groups of interchangeable fields: at least one of each group must be selected; the first selected
    # one is used (e.g. ExpectedRevenue, which Salesforce can SUM, else Probability, which it cannot).
    one_of: tuple[tuple[str, ...], ...] = ()

    def __post_init__(self) -> None:
        salesforce_name(self.object_name)
        alternatives = (name for group in self.one_of for name in group)
        for name in (*self.required, *(c for dim in self.optional for c in dim.candidates), *alternatives):
            salesforce_field_path(name)

    def missing(self, selection: Selection | Mapping[str, Iterable[str]]) -> list[str]:
        """The required fields not selected (all of them when the object is not selected), sorted, then
        `one of A, B` for each group of alternatives none of which is selected."""
        selection = Selection.of(selection)
        missing = sorted(
            name
            for name in self.required
            if name not in IMPLICIT_FIELDS and not selection.has_field(self.object_name, name)
        )
        for group in self.one_of:
            if not any(selection.has_field(self.object_name, name) for name in group):
                missing.append("one of " + " or ".join(group))
        return missing

    def chosen_alternatives(self, selection: Selection | Mapping[str, Iterable[str]]) -> tuple[str | None, ...]:
        """For each group in one_of, its first selected field (None when none is)."""
        selection = Selection.of(selection)
        return tuple(
            next((name for name in group if selection.has_field(self.object_name, name)), None) for group in self.one_of
        )

    def check(self, selection: Selection | Mapping[str, Iterable[str]]) -> Selection:
        """The validated selection, or a SelectionError naming the metric, the object and what is missing."""
        selection = Selection.of(selection)
        missing = self.missing(selection)
        if missing:
            where = "" if selection.has_object(self.object_name) else " (object not selected)"
            raise SelectionError(
                f"metric {self.metric} needs {self.object_name} fields that are not selected{where}: "
                + ", ".join(missing)
            )
        return selection

    def chosen_dimensions(self, selection: Selection | Mapping[str, Iterable[str]]) -> tuple[tuple[str, str], ...]:
        """(dimension, field path) for each optional breakdown the selection allows, in declared order."""
        selection = Selection.of(selection)
        chosen = []
        for dimension in self.optional:
            for candidate in dimension.candidates:
                if selection.has_field(self.object_name, candidate):
                    chosen.append((dimension.dimension, candidate))
                    break
        return tuple(chosen)
