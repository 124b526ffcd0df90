"""BigQuery budget gate: the monthly ledger of bytes billed per connection, and the approvals queue.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bigquery_ledger",
        sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), primary_key=True),
        sa.Column("month", sa.String(7), primary_key=True),  # YYYY-MM, UTC calendar month
        sa.Column("bytes_billed", sa.BigInteger, nullable=False),
        sa.Column("jobs", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "bigquery_approvals",
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
    op.create_index("ix_bigquery_approvals_connection_status", "bigquery_approvals", ["connection_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_bigquery_approvals_connection_status", table_name="bigquery_approvals")
    op.drop_table("bigquery_approvals")
    op.drop_table("bigquery_ledger")
