"""Data-subject requests (with their legal due dates and identity verification), subject restrictions,
and the sent sync-error notifications that keep each failed run's email to exactly one.

Revision ID: 0004
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = ("privacy_requests",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subject_requests",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("law", sa.String(8), nullable=False),
        sa.Column("subject_email", sa.String(320), nullable=False, index=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("identity_verified_at", sa.DateTime(timezone=True)),
        sa.Column("identity_verified_by", sa.String(200)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True)),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("response", sa.JSON),
    )
    op.create_table(
        "subject_restrictions",
        sa.Column("subject_email", sa.String(320), primary_key=True),
        sa.Column("restricted", sa.Boolean, nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.Integer, sa.ForeignKey("subject_requests.id"), nullable=False),
        sa.Column("reason", sa.String(16), nullable=False),
    )
    op.create_table(
        "sent_notifications",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("connection_id", sa.String(64), nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("channels", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("sent_notifications")
    op.drop_table("subject_restrictions")
    op.drop_table("subject_requests")
