"""VIPs, port-forwarding rules and EIPs

Revision ID: v001
Revises:
Create Date: 2026-12-05
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "v001"
down_revision = None
branch_labels = ("vip",)
depends_on = "0010"


def _resource() -> list[sa.Column[Any]]:
    return [
        sa.Column("uuid", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(2048), nullable=True),
        sa.Column("create_date", sa.DateTime(), nullable=False),
        sa.Column("last_op_date", sa.DateTime(), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "vip",
        *_resource(),
        sa.Column(
            "l3_network_uuid", sa.String(32), sa.ForeignKey("l3_network.uuid"), nullable=False
        ),
        sa.Column("used_ip_uuid", sa.String(32), sa.ForeignKey("used_ip.uuid"), nullable=False),
        sa.Column("ip", sa.String(64), nullable=False),
        sa.Column("netmask", sa.String(64), nullable=False),
        sa.Column("gateway", sa.String(64), nullable=False),
        sa.Column("use_for", sa.String(64), nullable=False),
        sa.Column(
            "peer_l3_network_uuid",
            sa.String(32),
            sa.ForeignKey("l3_network.uuid", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("state", sa.String(32), nullable=False),
    )
    op.create_index("ix_vip_l3_network_uuid", "vip", ["l3_network_uuid"])
    op.create_table(
        "port_forwarding_rule",
        *_resource(),
        sa.Column("vip_uuid", sa.String(32), sa.ForeignKey("vip.uuid"), nullable=False),
        sa.Column("vip_ip", sa.String(64), nullable=False),
        sa.Column("vip_port_start", sa.Integer(), nullable=False),
        sa.Column("vip_port_end", sa.Integer(), nullable=False),
        sa.Column("private_port_start", sa.Integer(), nullable=False),
        sa.Column("private_port_end", sa.Integer(), nullable=False),
        sa.Column("protocol_type", sa.String(8), nullable=False),
        sa.Column("allowed_cidr", sa.String(64), nullable=True),
        sa.Column(
            "vm_nic_uuid",
            sa.String(32),
            sa.ForeignKey("vm_nic.uuid", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("guest_ip", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
    )
    op.create_index("ix_port_forwarding_rule_vip_uuid", "port_forwarding_rule", ["vip_uuid"])
    op.create_index("ix_port_forwarding_rule_vm_nic_uuid", "port_forwarding_rule", ["vm_nic_uuid"])
    op.create_table(
        "eip",
        *_resource(),
        sa.Column(
            "vip_uuid", sa.String(32), sa.ForeignKey("vip.uuid"), nullable=False, unique=True
        ),
        sa.Column("vip_ip", sa.String(64), nullable=False),
        sa.Column(
            "vm_nic_uuid",
            sa.String(32),
            sa.ForeignKey("vm_nic.uuid", ondelete="SET NULL"),
            nullable=True,
            unique=True,
        ),
        sa.Column("guest_ip", sa.String(64), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("eip")
    op.drop_table("port_forwarding_rule")
    op.drop_table("vip")
