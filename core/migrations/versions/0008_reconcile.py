"""reconciler: the orphans seen on hosts

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05 10:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "host_orphan",
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("host_uuid", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("ref", sa.String(length=1024), nullable=False),
        sa.Column("detail", sa.String(length=1024), nullable=False),
        sa.Column("first_seen", sa.DateTime(), nullable=False),
        sa.Column("last_seen", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("uuid"),
        sa.UniqueConstraint("host_uuid", "kind", "name"),
    )
    with op.batch_alter_table("host_orphan", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_host_orphan_host_uuid"), ["host_uuid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("host_orphan", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_host_orphan_host_uuid"))
    op.drop_table("host_orphan")
