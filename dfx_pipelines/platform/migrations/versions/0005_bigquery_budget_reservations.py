"""BigQuery budget reservations: the projected bytes of runs that passed the budget check and have not
settled yet, so concurrent runs see each other's spend before it is billed.

Revision ID: 0005_bq_reservations
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_bq_reservations"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bigquery_reservations",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("connection_id", sa.String(64), sa.ForeignKey("connections.id"), nullable=False),
        sa.Column("month", sa.String(7), nullable=False),  # YYYY-MM, UTC: the ledger month it settles into
        sa.Column("reserved_bytes", sa.BigInteger, nullable=False),  # projected billed bytes not yet settled
        sa.Column("in_flight_bytes", sa.BigInteger, nullable=False),  # caps of jobs sent and not yet settled
        sa.Column("in_flight_jobs", sa.Integer, nullable=False),
        sa.Column("owner", sa.String(200), nullable=False),  # host:pid and run, for people reading the table
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),  # the lease its owner renews
    )
    op.create_index("ix_bigquery_reservations_connection_month", "bigquery_reservations", ["connection_id", "month"])


def downgrade() -> None:
    op.drop_index("ix_bigquery_reservations_connection_month", table_name="bigquery_reservations")
    op.drop_table("bigquery_reservations")
