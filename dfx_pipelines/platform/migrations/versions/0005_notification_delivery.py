"""Sync-failure notifications become a durable outbox: a failed run is queued first, then delivered
with retries and backoff; each row keeps its attempts, when it is next due and why the last attempt
failed (redacted), so an undeliverable notification is visible and never lost.

Revision ID: notification_delivery
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "notification_delivery"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sent_notifications") as batch:
        batch.add_column(sa.Column("attempts", sa.Integer, nullable=False, server_default="0"))
        batch.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True)))
        batch.add_column(sa.Column("last_error", sa.String(500)))
    op.create_index("ix_sent_notifications_due", "sent_notifications", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_sent_notifications_due", "sent_notifications")
    with op.batch_alter_table("sent_notifications") as batch:
        batch.drop_column("last_error")
        batch.drop_column("next_attempt_at")
        batch.drop_column("attempts")
