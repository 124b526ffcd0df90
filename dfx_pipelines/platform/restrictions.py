"""Whose data must not be processed right now: workspaces whose owner asked for restriction (or
objected) in a data-subject request. The lifecycle records restrictions; every run checks here."""

import sqlalchemy as sa

from dfx_pipelines.platform import tables


def restricted_workspace_ids(engine: sa.Engine) -> set[str]:
    """Workspaces whose owner is restricted: their connections must not be synced."""
    w, r = tables.workspaces, tables.subject_restrictions
    query = (
        sa.select(w.c.id)
        .select_from(w.join(r, sa.func.lower(w.c.owner_email) == r.c.subject_email))
        .where(r.c.restricted.is_(True))
    )
    with engine.connect() as db:
        return {row[0] for row in db.execute(query)}
