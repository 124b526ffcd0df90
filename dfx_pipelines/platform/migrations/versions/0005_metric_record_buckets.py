"""The record-bucket index: which day bucket each source record was last counted in, per metric. Ids and
days only (no field values), so change-data capture can find the day a changed or deleted record left.

Revision ID: 0005_record_buckets
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_record_buckets"
down_revision = "0001"
branch_labels = ("record_buckets",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_record_buckets",
        sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("record_id", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "metric", "day", "record_id", name="pk_metric_record_buckets"),
    )
    op.create_index("ix_metric_record_buckets_record", "metric_record_buckets", ["connection_id", "record_id"])


def downgrade() -> None:
    op.drop_index("ix_metric_record_buckets_record", table_name="metric_record_buckets")
    op.drop_table("metric_record_buckets")
