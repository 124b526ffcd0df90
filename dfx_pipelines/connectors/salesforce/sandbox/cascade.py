"""What deleting a record does to the records that point at it, as Salesforce does it.

Each reference field of the schema carries a rule (`schema.ON_DELETE_RULES`): an Account's Contacts and
Opportunities (and everything that cascades from those: opportunity history, activities, campaign
memberships) go to the Recycle Bin with it, and are then reported by queryAll with IsDeleted = true and by
getDeleted; a live Case refuses the delete with DELETE_FAILED; a plain lookup (Account.ParentId, a custom
lookup) is emptied. `plan_delete` works out the whole effect first and raises before anything is written,
so a refused delete changes nothing.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from functools import cache

from .errors import SalesforceApiError
from .schema import CASCADE, CLEAR, OBJECTS, RESTRICT, STORED_OBJECTS, FieldDef, ObjectDef

_CHUNK = 500  # ids per `IN (...)`: well under SQLite's variable limit


@dataclass
class DeletePlan:
    """Everything one delete does: the records it deletes (the target first) and the lookups it empties."""

    deleted: dict[str, list[str]] = field(default_factory=dict)  # object -> ids, in the order found
    cleared: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (object, field) -> ids

    def ids(self) -> set[str]:
        return {record_id for ids in self.deleted.values() for record_id in ids}


@cache
def referencing(parent: str) -> tuple[tuple[ObjectDef, FieldDef], ...]:
    """The stored objects' reference fields that can point at `parent`, with a rule that acts on delete."""
    return tuple(
        (obj, f)
        for obj in STORED_OBJECTS
        for f in obj.fields
        if f.type == "reference" and parent in f.reference_to and f.on_delete in (CASCADE, RESTRICT, CLEAR)
    )


def indexed_references() -> list[tuple[str, str]]:
    """(object, field) of every reference a delete looks children up by: these columns want an index."""
    return sorted({(obj.name, f.name) for parent in OBJECTS for obj, f in referencing(parent)})


def _children(db: sqlite3.Connection, obj: ObjectDef, f: FieldDef, parent_ids: list[str]) -> list[tuple[str, str]]:
    """(Id, parent id) of the live records of `obj` whose `f` is one of `parent_ids`."""
    found: list[tuple[str, str]] = []
    for start in range(0, len(parent_ids), _CHUNK):
        chunk = parent_ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        found += db.execute(
            f'SELECT "Id", "{f.name}" FROM "{obj.name}" WHERE "{f.name}" IN ({marks}) AND "IsDeleted" = 0', chunk
        ).fetchall()
    return found


def plan_delete(db: sqlite3.Connection, objdef: ObjectDef, record_id: str) -> DeletePlan:
    """The effect of deleting one live record, or DELETE_FAILED naming the records that prevent it."""
    plan = DeletePlan(deleted={objdef.name: [record_id]})
    seen = {record_id}
    frontier: dict[str, list[str]] = {objdef.name: [record_id]}
    restricting: list[tuple[ObjectDef, FieldDef, list[str]]] = []
    while frontier:
        found: dict[str, list[str]] = {}
        for parent, parent_ids in frontier.items():
            for child, f in referencing(parent):
                if f.on_delete == RESTRICT:
                    restricting.append((child, f, parent_ids))
                    continue
                if f.on_delete != CASCADE:
                    continue
                for child_id, _ in _children(db, child, f, parent_ids):
                    if child_id not in seen:
                        seen.add(child_id)
                        found.setdefault(child.name, []).append(child_id)
        for name, ids in found.items():
            plan.deleted.setdefault(name, []).extend(ids)
        frontier = found
    blockers = [
        (child, child_id)
        for child, f, parent_ids in restricting
        for child_id, _ in _children(db, child, f, parent_ids)
        if child_id not in seen
    ]
    if blockers:
        raise _delete_failed(db, objdef, record_id, blockers)
    # Lookups of surviving records that pointed into the deleted set are emptied.
    deleted_ids = sorted(seen)
    for name in plan.deleted:
        for child, f in referencing(name):
            if f.on_delete == CLEAR:
                ids = [child_id for child_id, _ in _children(db, child, f, deleted_ids) if child_id not in seen]
                if ids:
                    plan.cleared.setdefault((child.name, f.name), []).extend(ids)
    return plan


def _display_name(db: sqlite3.Connection, obj: ObjectDef, record_id: str) -> str:
    name_field = next((f.name for f in obj.fields if f.name_field), None)
    if name_field is None:
        return record_id
    row = db.execute(f'SELECT "{name_field}" FROM "{obj.name}" WHERE "Id" = ?', (record_id,)).fetchone()
    return str(row[0]) if row and row[0] else record_id


def _delete_failed(
    db: sqlite3.Connection, objdef: ObjectDef, record_id: str, blockers: list[tuple[ObjectDef, str]]
) -> SalesforceApiError:
    # Salesforce's wording: "Your attempt to delete Acme could not be completed because it is associated
    # with the following cases.: 00001001, 00001002" (HTTP 400, errorCode DELETE_FAILED, fields []).
    by_object: dict[str, list[str]] = {}
    for child, child_id in blockers:
        by_object.setdefault(child.name, []).append(_display_name(db, child, child_id))
    parts = [
        f"{OBJECTS[name].label_plural.lower()}.: {', '.join(sorted(set(names)))}" for name, names in by_object.items()
    ]
    message = (
        f"Your attempt to delete {_display_name(db, objdef, record_id)} could not be completed because it is "
        f"associated with the following {'; '.join(parts)}"
    )
    return SalesforceApiError(400, "DELETE_FAILED", message, [])
