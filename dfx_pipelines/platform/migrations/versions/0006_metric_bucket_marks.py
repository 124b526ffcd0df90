"""Record-bucket marks: per (connection, metric, day) whose bucket is stored, the server instant the bucket
is complete as of, when it was last read in full, and a digest of its change query, so a later run reads
only the records changed since instead of every id of the day. Instants and a digest only (no values).

Revision ID: 0006_bucket_marks
Revises: 0005_record_buckets
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_bucket_marks"
down_revision = "0005_record_buckets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_bucket_marks",
        sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("metric", sa.String(128), nullable=False),
        sa.Column("day", sa.Date, nullable=False),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rebuilt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("connection_id", "metric", "day", name="pk_metric_bucket_marks"),
    )


def downgrade() -> None:
    op.drop_table("metric_bucket_marks")
