"""security groups: groups, rules, NIC and L3 network references

Revision ID: sg001
Revises:
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "sg001"
down_revision = None
branch_labels = ("securityGroup",)
depends_on = "0003"
"""The core revision that made vm_nic and l3_network, which the references name."""


def _resource_columns() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("uuid", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.String(2048), nullable=True),
        sa.Column("create_date", sa.DateTime(), nullable=False),
        sa.Column("last_op_date", sa.DateTime(), nullable=False),
    ]


def _fk(column: str, target: str, *, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        column, sa.String(32), sa.ForeignKey(target, ondelete="CASCADE"), nullable=nullable
    )


def upgrade() -> None:
    op.create_table(
        "security_group",
        *_resource_columns(),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("ip_version", sa.Integer(), nullable=False),
    )
    op.create_table(
        "security_group_rule",
        sa.Column("uuid", sa.String(32), primary_key=True),
        _fk("security_group_uuid", "security_group.uuid"),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("protocol", sa.String(16), nullable=False),
        sa.Column("start_port", sa.Integer(), nullable=False),
        sa.Column("end_port", sa.Integer(), nullable=False),
        sa.Column("allowed_cidr", sa.String(64), nullable=True),
        _fk("remote_security_group_uuid", "security_group.uuid", nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
    )
    op.create_table(
        "vm_nic_security_group_ref",
        sa.Column("uuid", sa.String(32), primary_key=True),
        _fk("vm_nic_uuid", "vm_nic.uuid"),
        _fk("security_group_uuid", "security_group.uuid"),
        sa.Column("vm_instance_uuid", sa.String(32), nullable=False),
        sa.UniqueConstraint("vm_nic_uuid", "security_group_uuid"),
    )
    op.create_table(
        "security_group_l3_network_ref",
        sa.Column("uuid", sa.String(32), primary_key=True),
        _fk("l3_network_uuid", "l3_network.uuid"),
        _fk("security_group_uuid", "security_group.uuid"),
        sa.UniqueConstraint("l3_network_uuid", "security_group_uuid"),
    )
    for table, columns in (
        ("security_group_rule", ("security_group_uuid", "remote_security_group_uuid")),
        ("vm_nic_security_group_ref", ("vm_nic_uuid", "security_group_uuid", "vm_instance_uuid")),
        ("security_group_l3_network_ref", ("l3_network_uuid", "security_group_uuid")),
    ):
        for column in columns:
            op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table in (
        "security_group_l3_network_ref",
        "vm_nic_security_group_ref",
        "security_group_rule",
        "security_group",
    ):
        op.drop_table(table)
