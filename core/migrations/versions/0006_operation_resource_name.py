"""operation log: the name of an operation's resource

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 03:30:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operation_log", schema=None) as batch_op:
        batch_op.add_column(sa.Column("resource_name", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("operation_log", schema=None) as batch_op:
        batch_op.drop_column("resource_name")
