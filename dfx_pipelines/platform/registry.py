"""Workspaces and their connections: what a customer connected, what they selected, how fields map.

Every identifier that will reach SOQL, SQL or JQL is validated here, once, by the connector kind's
strict patterns (`platform.identifiers`), which its plugin declares (selection model, field-mapper
sources, write-back: found through `platform.catalogue`); connectors then take names only from a
validated `Connection`. A connection's id is a slug that doubles as its Dagster dynamic partition key.

Adding a connection writes the registry row and the vault secrets together or not at all.
"""

from __future__ import annotations

import builtins
import enum
import unicodedata
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from dfx_pipelines.platform import catalogue, identifiers, tables
from dfx_pipelines.platform.errors import ConfigError, IdentifierError, UnknownConnectionError
from dfx_pipelines.platform.vault import SecretRef, Vault


def utcnow() -> datetime:
    return datetime.now(UTC)


TOMBSTONE_NAME = "(deleted)"  # a deleted connection's display name: the customer's own name for it is gone


class ConnectionStatus(str, enum.Enum):
    ACTIVE = "active"
    REVOKED = "revoked"  # credentials destroyed; cached data kept until deletion
    REMOVED = "removed"  # the customer removed it; cached data is deleted within the grace period
    DELETED = "deleted"  # everything cached from it is gone; the row stays as a tombstone for the audit


# -------------------------------------------------------------- models


class _Model(BaseModel):
    # No `str_strip_whitespace`: a customer's selection is exactly what they typed, or an error. Trimming
    # `Opportunity\n` into `Opportunity` would silently accept a value the customer never saw refused.
    model_config = ConfigDict(extra="forbid", frozen=False)


def _display_text(value: str) -> str:
    """Free text shown to people (names in the UI, email subjects): no control or format characters,
    which would split a header line or hide text; surrounding spaces are refused, not trimmed."""
    if value != value.strip():
        raise ValueError("has surrounding whitespace")
    bad = next((c for c in value if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise ValueError(f"contains the control character U+{ord(bad):04X}")
    return value


_LEGACY_FIELDS = ("objects", "projects", "boards", "datasets")  # the one selection model all kinds once shared


_S = TypeVar("_S", bound="SelectionBase")


class SelectionBase(_Model):
    """What the customer chose to share. Only what is listed here is ever read.

    Each connector kind defines its own selection model (its plugin's `selection_model`: Salesforce's
    `objects`, Jira's `projects` and `boards`, BigQuery's `datasets` and `objects`); a `Connection` holds
    the model of its kind, stored as its `selection` JSON.
    """

    @model_validator(mode="before")
    @classmethod
    def _legacy_empty_fields(cls, data: Any) -> Any:
        # Rows stored before each kind had its own model hold every kind's fields, the others' empty
        # (`"projects": []` in a Salesforce selection): those are dropped; a non-empty one stays an error.
        if isinstance(data, Mapping):
            return {
                key: value
                for key, value in data.items()
                if key in cls.model_fields or key not in _LEGACY_FIELDS or value not in ([], {})
            }
        return data

    def narrowed(self, model: type[_S]) -> _S:
        """This selection as its kind's model, for a connector that needs the exact type (the type
        checker sees `Connection.selection` as the base); a selection of another kind is a bug."""
        if not isinstance(self, model):
            raise TypeError(f"expected a {model.__name__}, got a {type(self).__name__}")
        return self

    def check(self, endpoint: Mapping[str, Any]) -> None:
        """Validate every identifier that will reach a query by the kind's strict patterns (some
        depend on the endpoint, e.g. Jira's flavour). Raises ValueError or IdentifierError."""


def unique_entries(value: dict[str, list[str]]) -> dict[str, list[str]]:
    """For a selection's `name -> list` fields: each list lists an entry once."""
    for key, items in value.items():
        if len(set(items)) != len(items):
            raise ValueError(f"{key}: duplicate entries in {items}")
    return value


class FieldMapping(_Model):
    """Maps a product-level name (`story_points`, `team`, `region`) to a source field the customer chose."""

    target: str
    source: str
    label: str | None = None

    @field_validator("target")
    @classmethod
    def _target(cls, value: str) -> str:
        return identifiers.sql_identifier(value)


class WriteBackDesignation(_Model):
    """A source field the customer allowed us to write one metric's value to: each metric row whose
    `record_dimension` holds a record id of `object` writes its value there. Whether a kind supports
    write-back, and the names its `object` and `field` may take, are its plugin's rules
    (`ConnectorPlugin.validate_write_back`)."""

    object: str
    field: str
    metric: str
    measure: str
    record_dimension: str = "record_id"

    @field_validator("metric", "measure", "record_dimension")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        return identifiers.sql_identifier(value)


class ConnectionSettings(_Model):
    schedule_cron: str = "0 2 * * *"  # the nightly full recompute
    timezone: str = "UTC"
    history_days: int = Field(default=90, ge=1, le=3660)  # how far back daily partitions start
    monthly_budget_usd: float | None = Field(default=None, gt=0)  # BigQuery; None: no query may run
    price_per_tib_usd: float = Field(default=6.25, gt=0)
    api_limit_share: float = Field(default=0.5, gt=0, le=1)  # stop before this share of a daily API limit
    lookback_minutes: int = Field(default=15, ge=0, le=1440)  # incremental sync overlap
    allow_private_address: bool = False  # Jira Data Center on a private network: explicit opt-in

    @field_validator("schedule_cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(f"schedule_cron must have 5 fields, got {value!r}")
        return value


class Workspace(_Model):
    id: str
    name: str = Field(min_length=1, max_length=200)
    owner_email: str = Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    created_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return identifiers.workspace_id(value)

    @field_validator("name", "owner_email")
    @classmethod
    def _text(cls, value: str) -> str:
        return _display_text(value)


class Connection(_Model):
    id: str
    workspace_id: str
    kind: str
    display_name: str = Field(min_length=1, max_length=200)
    # The kind's own model (validated by `_selection_of_kind`); SerializeAsAny: dumps keep its fields.
    selection: SerializeAsAny[SelectionBase] = Field(default_factory=dict, validate_default=True)
    field_mapper: list[FieldMapping] = Field(default_factory=list)
    write_back: list[WriteBackDesignation] = Field(default_factory=list)
    settings: ConnectionSettings = Field(default_factory=ConnectionSettings)
    endpoint: dict[str, Any] = Field(default_factory=dict)  # non-secret: instance_url, cloud id, project
    discovered: dict[str, Any] = Field(default_factory=dict)  # e.g. Jira custom fields found at connect time
    status: ConnectionStatus = ConnectionStatus.ACTIVE
    created_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None
    removed_at: datetime | None = None
    deleted_at: datetime | None = None

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        return identifiers.connection_slug(value)

    @field_validator("workspace_id")
    @classmethod
    def _workspace(cls, value: str) -> str:
        return identifiers.workspace_id(value)

    @field_validator("display_name")
    @classmethod
    def _display_name(cls, value: str) -> str:
        return _display_text(value)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if catalogue.find(value) is None:
            raise ValueError(f"unknown connector kind {value!r}; known kinds: {', '.join(catalogue.kinds())}")
        return value

    @field_validator("selection", mode="before")
    @classmethod
    def _selection_of_kind(cls, value: Any, info: ValidationInfo) -> Any:
        kind = info.data.get("kind")
        if kind is None:  # the kind was refused: that is the error to report
            return SelectionBase()
        model = catalogue.plugin(kind).selection_model
        return value if isinstance(value, model) else model.model_validate(value)

    @model_validator(mode="after")
    def _identifiers(self) -> Connection:
        # The kind's rules, from its plugin: the selection's identifiers, the field mapper's sources, write-back.
        plugin = catalogue.plugin(self.kind)
        self.selection.check(self.endpoint)
        targets = [mapping.target for mapping in self.field_mapper]
        if len(set(targets)) != len(targets):
            raise ValueError(f"field mapper maps the same target twice: {targets}")
        for mapping in self.field_mapper:
            plugin.validate_source_field(mapping.source)
        plugin.validate_write_back(self.write_back, self.selection, self.endpoint)
        return self

    @property
    def is_active(self) -> bool:
        return self.status is ConnectionStatus.ACTIVE

    def secret_ref(self, kind: str) -> SecretRef:
        return SecretRef(self.workspace_id, self.id, kind)

    def mapped_field(self, target: str) -> str | None:
        return next((m.source for m in self.field_mapper if m.target == target), None)

    def config_json(self) -> dict[str, Any]:
        return self.model_dump(
            mode="json", include={"selection", "field_mapper", "write_back", "settings", "endpoint", "discovered"}
        )


def parse_connection(data: Mapping[str, Any]) -> Connection:
    """Build a `Connection` from untrusted input, turning validation errors into one clear ConfigError."""
    try:
        return Connection.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'connection'}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigError(f"invalid connection config: {problems}") from None
    except IdentifierError:
        raise


# -------------------------------------------------------------- persistence


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:  # SQLite drops the zone; we only ever store UTC
        return value.replace(tzinfo=UTC)
    return value


class Registry:
    def __init__(self, engine: sa.Engine):
        self.engine = engine

    # -- workspaces

    def upsert_workspace(self, workspace: Workspace) -> Workspace:
        values = workspace.model_dump()
        with self.engine.begin() as db:
            exists = db.execute(
                sa.select(tables.workspaces.c.id, tables.workspaces.c.closed_at).where(
                    tables.workspaces.c.id == workspace.id
                )
            ).first()
            if exists and exists.closed_at is not None:
                raise ConfigError(f"workspace {workspace.id!r} is closed; a closed account is not reopened")
            if exists:
                db.execute(tables.workspaces.update().where(tables.workspaces.c.id == workspace.id).values(**values))
            else:
                db.execute(tables.workspaces.insert().values(**values))
        return workspace

    def close_workspace(self, workspace_id: str) -> Workspace:
        """Mark the workspace closed (once: a second call keeps the first closing time)."""
        w = tables.workspaces
        self.get_workspace(workspace_id)
        with self.engine.begin() as db:
            db.execute(w.update().where(w.c.id == workspace_id, w.c.closed_at.is_(None)).values(closed_at=utcnow()))
        return self.get_workspace(workspace_id)

    def get_workspace(self, workspace_id: str) -> Workspace:
        with self.engine.connect() as db:
            row = (
                db.execute(sa.select(tables.workspaces).where(tables.workspaces.c.id == workspace_id))
                .mappings()
                .first()
            )
        if row is None:
            raise ConfigError(f"unknown workspace {workspace_id!r}")
        return Workspace(**{**row, "created_at": _aware(row["created_at"]), "closed_at": _aware(row["closed_at"])})

    # -- connections

    @staticmethod
    def _from_row(row: Mapping[Any, Any]) -> Connection:
        return Connection.model_validate(
            {
                **row["config"],
                "id": row["id"],
                "workspace_id": row["workspace_id"],
                "kind": row["kind"],
                "display_name": row["display_name"],
                "status": row["status"],
                "created_at": _aware(row["created_at"]),
                "revoked_at": _aware(row["revoked_at"]),
                "removed_at": _aware(row["removed_at"]),
                "deleted_at": _aware(row["deleted_at"]),
            }
        )

    @staticmethod
    def _to_row(connection: Connection) -> dict[str, Any]:
        return {
            "id": connection.id,
            "workspace_id": connection.workspace_id,
            "kind": connection.kind,
            "display_name": connection.display_name,
            "config": connection.config_json(),
            "status": connection.status.value,
            "created_at": connection.created_at,
            "updated_at": utcnow(),
            "revoked_at": connection.revoked_at,
            "removed_at": connection.removed_at,
            "deleted_at": connection.deleted_at,
        }

    def add_connection(
        self,
        connection: Connection,
        *,
        vault: Vault | None = None,
        secrets: Mapping[str, str | bytes] | None = None,
    ) -> Connection:
        """Insert the connection and store its secrets: both happen, or neither does.

        The row is inserted inside a transaction, the secrets are written to the vault, and only then is
        the transaction committed; any failure destroys whatever reached the vault and rolls back."""
        secrets = dict(secrets or {})
        if secrets and vault is None:
            raise ConfigError("secrets given without a vault to keep them in")
        refs = {kind: connection.secret_ref(kind) for kind in secrets}  # validates secret kinds up front
        if self.get_workspace(connection.workspace_id).closed_at is not None:
            raise ConfigError(f"workspace {connection.workspace_id!r} is closed: no connection can be added to it")
        if self.find(connection.id) is not None:
            raise ConfigError(f"connection {connection.id!r} already exists")
        stored_any = False
        try:
            with self.engine.begin() as db:
                db.execute(tables.connections.insert().values(**self._to_row(connection)))
                for kind, value in secrets.items():
                    stored_any = True
                    vault.put(refs[kind], value)  # type: ignore[union-attr]
        except BaseException:
            if stored_any and vault is not None:
                vault.destroy_connection(connection.workspace_id, connection.id)
            raise
        return connection

    def save(self, connection: Connection) -> Connection:
        """Persist changes to an existing connection (selection, mapper, settings, status)."""
        c = tables.connections
        with self.engine.begin() as db:
            result = db.execute(
                c.update()
                .where(c.c.id == connection.id, c.c.status != ConnectionStatus.DELETED.value)
                .values(**self._to_row(connection))
            )
        if result.rowcount == 0:
            self.get(connection.id)  # unknown: UnknownConnectionError
            raise ConfigError(f"connection {connection.id!r} is deleted: its tombstone is not edited")
        return connection

    def find(self, connection_id: str) -> Connection | None:
        with self.engine.connect() as db:
            row = (
                db.execute(sa.select(tables.connections).where(tables.connections.c.id == connection_id))
                .mappings()
                .first()
            )
        return self._from_row(row) if row else None

    def get(self, connection_id: str) -> Connection:
        connection = self.find(connection_id)
        if connection is None:
            raise UnknownConnectionError(f"unknown connection {connection_id!r}")
        return connection

    def list(
        self,
        *,
        kind: str | None = None,
        workspace_id: str | None = None,
        statuses: Iterable[ConnectionStatus] | None = None,
    ) -> builtins.list[Connection]:
        query = sa.select(tables.connections).order_by(tables.connections.c.id)
        if kind is not None:
            query = query.where(tables.connections.c.kind == kind)
        if workspace_id is not None:
            query = query.where(tables.connections.c.workspace_id == workspace_id)
        if statuses is not None:
            query = query.where(tables.connections.c.status.in_([s.value for s in statuses]))
        with self.engine.connect() as db:
            return [self._from_row(row) for row in db.execute(query).mappings()]

    def partition_keys(self, kind: str) -> builtins.list[str]:
        """Connections that still hold cached data, and so still have a partition."""
        live = (ConnectionStatus.ACTIVE, ConnectionStatus.REVOKED, ConnectionStatus.REMOVED)
        return [c.id for c in self.list(kind=kind, statuses=live)]

    def tombstone(self, connection_id: str, at: datetime | None = None) -> Connection:
        """Mark the connection deleted, keeping only what the audit needs: its id (never reused, and
        what every audit row names), workspace and kind (whose connection it was, which provider), the
        status and the created/revoked/removed/deleted timestamps (the proof that deletion came within
        30 days of removal). Its name, selection, field mapper, write-back, settings, endpoint (instance
        URL, site, project) and discovered fields are the customer's data and go."""
        connection = self.get(connection_id)
        at = at or utcnow()
        with self.engine.begin() as db:
            db.execute(
                tables.connections.update()
                .where(tables.connections.c.id == connection_id)
                .values(
                    display_name=TOMBSTONE_NAME,
                    config={},
                    status=ConnectionStatus.DELETED.value,
                    deleted_at=connection.deleted_at or at,
                    updated_at=utcnow(),
                )
            )
        return self.get(connection_id)

    def set_status(self, connection_id: str, status: ConnectionStatus, at: datetime | None = None) -> Connection:
        if status is ConnectionStatus.DELETED:
            return self.tombstone(connection_id, at)
        connection = self.get(connection_id)
        at = at or utcnow()
        connection.status = status
        if status is ConnectionStatus.REVOKED:
            connection.revoked_at = connection.revoked_at or at
        elif status is ConnectionStatus.REMOVED:
            connection.revoked_at = connection.revoked_at or at
            connection.removed_at = connection.removed_at or at
        return self.save(connection)
