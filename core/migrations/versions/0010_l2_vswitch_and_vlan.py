"""L2 networks: a vSwitch type, switches shared by several networks, VLAN networks

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04 23:00:00.000000
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    vswitch = sa.Column(
        "v_switch_type", sa.String(length=32), nullable=False, server_default="LinuxBridge"
    )
    if op.get_bind().dialect.name == "sqlite":
        # SQLite's unique constraint has no name: batch mode names it to drop it.
        with op.batch_alter_table(
            "l2_network",
            recreate="always",
            naming_convention={"uq": "uq_%(table_name)s_%(column_0_name)s"},
        ) as batch_op:
            batch_op.drop_constraint("uq_l2_network_bridge_name", type_="unique")
            batch_op.add_column(vswitch)
            batch_op.create_index("ix_l2_network_bridge_name", ["bridge_name"], unique=False)
    else:
        op.drop_constraint("l2_network_bridge_name_key", "l2_network", type_="unique")
        op.add_column("l2_network", vswitch)
        op.create_index("ix_l2_network_bridge_name", "l2_network", ["bridge_name"], unique=False)
    op.create_table(
        "l2_vlan_network",
        sa.Column("uuid", sa.String(length=32), nullable=False),
        sa.Column("vlan", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["uuid"], ["l2_network.uuid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("uuid"),
    )


def downgrade() -> None:
    op.drop_table("l2_vlan_network")
    with op.batch_alter_table("l2_network") as batch_op:
        batch_op.drop_index("ix_l2_network_bridge_name")
        batch_op.drop_column("v_switch_type")
        batch_op.create_unique_constraint("uq_l2_network_bridge_name", ["bridge_name"])
