"""a test plugin's table

Revision ID: w001
Revises:
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "w001"
down_revision = None
branch_labels = ("widgets",)
depends_on = "0001"


def upgrade() -> None:
    op.create_table(
        "widget",
        sa.Column("uuid", sa.String(32), primary_key=True),
        sa.Column("zone_uuid", sa.String(32), sa.ForeignKey("zone.uuid", ondelete="CASCADE")),
    )


def downgrade() -> None:
    op.drop_table("widget")
