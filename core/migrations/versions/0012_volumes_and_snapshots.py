"""Data volumes, disk offerings and volume snapshots

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 05:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def _resource_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("description", sa.String(length=2048), nullable=True),
        sa.Column("create_date", sa.DateTime(), nullable=False),
        sa.Column("last_op_date", sa.DateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "disk_offering",
        sa.Column("disk_size", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        *_resource_columns(),
        sa.PrimaryKeyConstraint("uuid"),
    )
    op.create_table(
        "volume_snapshot",
        sa.Column("volume_uuid", sa.String(length=32), nullable=False),
        sa.Column("tree_uuid", sa.String(length=32), nullable=False),
        sa.Column("parent_uuid", sa.String(length=32), nullable=True),
        sa.Column("primary_storage_uuid", sa.String(length=32), nullable=False),
        sa.Column("install_path", sa.String(length=1024), nullable=False),
        sa.Column("volume_type", sa.String(length=16), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("type", sa.String(length=32), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("latest", sa.Boolean(), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        *_resource_columns(),
        sa.PrimaryKeyConstraint("uuid"),
    )
    with op.batch_alter_table("volume_snapshot") as batch_op:
        batch_op.create_index("ix_volume_snapshot_volume_uuid", ["volume_uuid"], unique=False)
        batch_op.create_index("ix_volume_snapshot_parent_uuid", ["parent_uuid"], unique=False)
    with op.batch_alter_table("volume") as batch_op:
        batch_op.add_column(sa.Column("disk_offering_uuid", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("last_vm_instance_uuid", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("volume") as batch_op:
        batch_op.drop_column("last_vm_instance_uuid")
        batch_op.drop_column("disk_offering_uuid")
    op.drop_table("volume_snapshot")
    op.drop_table("disk_offering")
