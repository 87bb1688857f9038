"""flow journal: the chain runs under way

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 08:10:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_run",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("resumable", sa.Boolean(), nullable=False),
        sa.Column("parent_chain_id", sa.String(length=32), nullable=True),
        sa.Column("operation_id", sa.String(length=32), nullable=True),
        sa.Column("operation_name", sa.String(length=255), nullable=True),
        sa.Column("resource_uuid", sa.String(length=64), nullable=True),
        sa.Column("resource_name", sa.String(length=255), nullable=True),
        sa.Column("data_type", sa.String(length=255), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("chains", sa.JSON(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )


def downgrade() -> None:
    op.drop_table("flow_run")
