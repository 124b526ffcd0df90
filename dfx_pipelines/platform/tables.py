"""SQLAlchemy Core tables mirroring the migrated schema (migrations own the schema; this is for queries)."""

import sqlalchemy as sa

metadata = sa.MetaData()

workspaces = sa.Table(
    "workspaces",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("owner_email", sa.String(320), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
)

connections = sa.Table(
    "connections",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("config", sa.JSON, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("removed_at", sa.DateTime(timezone=True)),
    sa.Column("deleted_at", sa.DateTime(timezone=True)),
)

metric_batches = sa.Table(
    "metric_batches",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), nullable=False),
    sa.Column("metric", sa.String(128), nullable=False),
    sa.Column("partition_key", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(64)),
    sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.Text),
    sa.Column("api_calls", sa.Integer),
    sa.Column("records_read", sa.BigInteger),
    sa.Column("bytes_read", sa.BigInteger),
    sa.Column("row_count", sa.Integer, nullable=False),
)

metric_values = sa.Table(
    "metric_values",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.Integer, sa.ForeignKey("metric_batches.id", ondelete="CASCADE"), nullable=False),
    sa.Column("period", sa.Date),
    sa.Column("measure", sa.String(128), nullable=False),
    sa.Column("dimensions", sa.Text, nullable=False),
    sa.Column("value", sa.Float),
)

# Which day bucket each source record was last counted in, per metric: record ids and days only, written
# in the same transaction as the metric batch of that day, deleted with the connection.
metric_record_buckets = sa.Table(
    "metric_record_buckets",
    metadata,
    sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), primary_key=True),
    sa.Column("metric", sa.String(128), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("record_id", sa.String(64), primary_key=True),
)

# Per (connection, metric, day) with a stored bucket: the server instant its bucket is complete as of (every
# record on the day that has not changed since is in it), when it was last read in full, and a digest of
# the query that reads its changes (another selection or object: not comparable, read in full again).
metric_bucket_marks = sa.Table(
    "metric_bucket_marks",
    metadata,
    sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), primary_key=True),
    sa.Column("metric", sa.String(128), primary_key=True),
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rebuilt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
)

lifecycle_audit = sa.Table(
    "lifecycle_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("workspace_id", sa.String(64), nullable=False),
    sa.Column("connection_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("details", sa.JSON, nullable=False),
)

bigquery_ledger = sa.Table(
    "bigquery_ledger",
    metadata,
    sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), primary_key=True),
    sa.Column("month", sa.String(7), primary_key=True),
    sa.Column("bytes_billed", sa.BigInteger, nullable=False),
    sa.Column("jobs", sa.Integer, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

bigquery_approvals = sa.Table(
    "bigquery_approvals",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), nullable=False),
    sa.Column("fingerprint", sa.String(64), nullable=False),
    sa.Column("sql_excerpt", sa.Text, nullable=False),
    sa.Column("queries", sa.Integer, nullable=False),
    sa.Column("projected_bytes", sa.BigInteger, nullable=False),
    sa.Column("projected_billed_bytes", sa.BigInteger, nullable=False),
    sa.Column("cap_bytes", sa.BigInteger, nullable=False),
    sa.Column("projected_cost_usd", sa.Float, nullable=False),
    sa.Column("month_to_date_usd", sa.Float, nullable=False),
    sa.Column("budget_usd", sa.Float),
    sa.Column("asset", sa.String(300), nullable=False),
    sa.Column("partition", sa.String(300), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True)),
    sa.Column("decided_by", sa.String(200)),
    sa.Column("used_at", sa.DateTime(timezone=True)),
    sa.Column("used_by_run", sa.String(64)),
)

bigquery_reservations = sa.Table(
    "bigquery_reservations",
    metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), nullable=False),
    sa.Column("month", sa.String(7), nullable=False),
    sa.Column("reserved_bytes", sa.BigInteger, nullable=False),
    sa.Column("in_flight_bytes", sa.BigInteger, nullable=False),
    sa.Column("in_flight_jobs", sa.Integer, nullable=False),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)

subject_requests = sa.Table(
    "subject_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("law", sa.String(8), nullable=False),
    sa.Column("subject_email", sa.String(320), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("identity_verified_at", sa.DateTime(timezone=True)),
    sa.Column("identity_verified_by", sa.String(200)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("completed_at", sa.DateTime(timezone=True)),
    sa.Column("request", sa.JSON, nullable=False),
    sa.Column("response", sa.JSON),
)

subject_restrictions = sa.Table(
    "subject_restrictions",
    metadata,
    sa.Column("subject_email", sa.String(320), primary_key=True),
    sa.Column("restricted", sa.Boolean, nullable=False),
    sa.Column("since", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request_id", sa.Integer, sa.ForeignKey("subject_requests.id"), nullable=False),
    sa.Column("reason", sa.String(16), nullable=False),
)

sent_notifications = sa.Table(
    "sent_notifications",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("connection_id", sa.String(64), nullable=False),
    sa.Column("recipient", sa.String(320), nullable=False),
    sa.Column("channels", sa.String(64), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # queued, sending, sent, sent-slack-failed, dropped
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True)),  # when a queued (or stuck sending) row is due
    sa.Column("last_error", sa.String(500)),  # why the last attempt failed, redacted
)
