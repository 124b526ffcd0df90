"""Workspaces, connections, and the metric store (batches with provenance, values).

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("owner_email", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "connections",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("workspace_id", sa.String(64), sa.ForeignKey("workspaces.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(32), nullable=False, index=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("config", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
        sa.Column("removed_at", sa.DateTime(timezone=True)),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "metric_batches",
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
        sa.UniqueConstraint("connection_id", "metric", "partition_key", name="uq_metric_batch"),
    )
    op.create_table(
        "metric_values",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "batch_id", sa.Integer, sa.ForeignKey("metric_batches.id", ondelete="CASCADE"), nullable=False, index=True
        ),
        sa.Column("period", sa.Date),
        sa.Column("measure", sa.String(128), nullable=False),
        sa.Column("dimensions", sa.Text, nullable=False),
        sa.Column("value", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("metric_values")
    op.drop_table("metric_batches")
    op.drop_table("connections")
    op.drop_table("workspaces")
