"""The lifecycle audit trail: what was revoked or deleted, how much, when, by whom, which data key died.

Audit rows hold ids, counts and timestamps only — never a secret or a metric value — so they can (and
must) outlive the data they describe.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from dfx_pipelines.platform import tables
from dfx_pipelines.platform.registry import Connection, utcnow

ACTIONS = ("revoke", "remove", "deletion_started", "deletion_completed", "deletion_failed")


def record(
    engine: sa.Engine,
    action: str,
    connection: Connection,
    actor: str,
    details: dict[str, Any],
    at: datetime | None = None,
) -> None:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}")
    with engine.begin() as db:
        db.execute(
            tables.lifecycle_audit.insert().values(
                at=at or utcnow(),
                action=action,
                workspace_id=connection.workspace_id,
                connection_id=connection.id,
                kind=connection.kind,
                actor=actor,
                details=details,
            )
        )


def entries(engine: sa.Engine, connection_id: str | None = None) -> list[dict[str, Any]]:
    query = sa.select(tables.lifecycle_audit).order_by(tables.lifecycle_audit.c.id)
    if connection_id is not None:
        query = query.where(tables.lifecycle_audit.c.connection_id == connection_id)
    with engine.connect() as db:
        return [dict(row) for row in db.execute(query).mappings()]
