"""The plugin's tables: groups, their rules, the NICs in them and the L3 networks they are
attached to (ZStack's SecurityGroupVO, SecurityGroupRuleVO, VmNicSecurityGroupRefVO,
SecurityGroupL3NetworkRefVO).

The references cascade with what they refer to (a group, a NIC, an L3 network), so a
deleted group, an expunged VM's NICs or a deleted L3 network leave no reference behind.
"""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin, new_uuid


class SecurityGroupVO(ResourceMixin, Base):
    __tablename__ = "security_group"
    resource_type = "SecurityGroupVO"

    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    ip_version: Mapped[int] = mapped_column(Integer, default=4)


class SecurityGroupRuleVO(Base):
    """Who may talk to a group's NICs (Ingress) or whom they may talk to (Egress): a
    protocol, a port range (TCP and UDP; -1 for none) and a peer, either a CIDR or the
    NICs of a remote group."""

    __tablename__ = "security_group_rule"

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    security_group_uuid: Mapped[str] = mapped_column(
        ForeignKey("security_group.uuid", ondelete="CASCADE"), index=True
    )
    type: Mapped[str] = mapped_column(String(16))
    protocol: Mapped[str] = mapped_column(String(16))
    start_port: Mapped[int] = mapped_column(Integer, default=-1)
    end_port: Mapped[int] = mapped_column(Integer, default=-1)
    allowed_cidr: Mapped[str | None] = mapped_column(String(64), default=None)
    remote_security_group_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("security_group.uuid", ondelete="CASCADE"), default=None, index=True
    )
    """A rule naming a group goes with that group."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")


class VmNicSecurityGroupRefVO(Base):
    __tablename__ = "vm_nic_security_group_ref"
    __table_args__ = (UniqueConstraint("vm_nic_uuid", "security_group_uuid"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    vm_nic_uuid: Mapped[str] = mapped_column(
        ForeignKey("vm_nic.uuid", ondelete="CASCADE"), index=True
    )
    security_group_uuid: Mapped[str] = mapped_column(
        ForeignKey("security_group.uuid", ondelete="CASCADE"), index=True
    )
    vm_instance_uuid: Mapped[str] = mapped_column(String(32), index=True)


class SecurityGroupL3NetworkRefVO(Base):
    __tablename__ = "security_group_l3_network_ref"
    __table_args__ = (UniqueConstraint("l3_network_uuid", "security_group_uuid"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    l3_network_uuid: Mapped[str] = mapped_column(
        ForeignKey("l3_network.uuid", ondelete="CASCADE"), index=True
    )
    security_group_uuid: Mapped[str] = mapped_column(
        ForeignKey("security_group.uuid", ondelete="CASCADE"), index=True
    )
