"""garbage collector jobs

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "garbage_collector",
        sa.Column("runner", sa.String(length=255), nullable=False),
        sa.Column("resource_uuid", sa.String(length=64), nullable=True),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("trigger_events", sa.JSON(), nullable=False),
        sa.Column("next_run_time", sa.DateTime(), nullable=True),
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=2048), nullable=True),
        sa.Column("create_date", sa.DateTime(), nullable=False),
        sa.Column("last_op_date", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
    )
    with op.batch_alter_table("garbage_collector", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_garbage_collector_resource_uuid"), ["resource_uuid"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_garbage_collector_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("garbage_collector", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_garbage_collector_status"))
        batch_op.drop_index(batch_op.f("ix_garbage_collector_resource_uuid"))
    op.drop_table("garbage_collector")
