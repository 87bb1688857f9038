"""VIPs, port-forwarding rules and EIPs (ZStack's VipVO, PortForwardingRuleVO, EipVO)."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class VipVO(ResourceMixin, Base):
    """An address of a public network held for port forwarding or an EIP.

    ``useFor`` lists what uses it (``PortForwarding``, ``Eip``): port forwarding may share
    a VIP with more rules, an EIP needs one of its own.  ``peerL3NetworkUuid`` is the guest
    network whose router holds the VIP once a rule or EIP on it is attached."""

    __tablename__ = "vip"
    resource_type = "VipVO"

    l3_network_uuid: Mapped[str] = mapped_column(ForeignKey("l3_network.uuid"), index=True)
    used_ip_uuid: Mapped[str] = mapped_column(ForeignKey("used_ip.uuid"))
    ip: Mapped[str] = mapped_column(String(64))
    netmask: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64))
    use_for: Mapped[str] = mapped_column(String(64), default="")
    peer_l3_network_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("l3_network.uuid", ondelete="SET NULL"), default=None
    )
    state: Mapped[str] = mapped_column(String(32), default="Enabled")


class PortForwardingRuleVO(ResourceMixin, Base):
    """VIP ports forwarded to a guest NIC's ports (attached when ``vmNicUuid`` is set)."""

    __tablename__ = "port_forwarding_rule"
    resource_type = "PortForwardingRuleVO"

    vip_uuid: Mapped[str] = mapped_column(ForeignKey("vip.uuid"), index=True)
    vip_ip: Mapped[str] = mapped_column(String(64))
    vip_port_start: Mapped[int] = mapped_column(Integer)
    vip_port_end: Mapped[int] = mapped_column(Integer)
    private_port_start: Mapped[int] = mapped_column(Integer)
    private_port_end: Mapped[int] = mapped_column(Integer)
    protocol_type: Mapped[str] = mapped_column(String(8))
    allowed_cidr: Mapped[str | None] = mapped_column(String(64), default=None)
    vm_nic_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("vm_nic.uuid", ondelete="SET NULL"), index=True, default=None
    )
    guest_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")


class EipVO(ResourceMixin, Base):
    """A VIP that is a guest NIC's own public address, both ways (attached when
    ``vmNicUuid`` is set)."""

    __tablename__ = "eip"
    resource_type = "EipVO"

    vip_uuid: Mapped[str] = mapped_column(ForeignKey("vip.uuid"), unique=True)
    vip_ip: Mapped[str] = mapped_column(String(64))
    vm_nic_uuid: Mapped[str | None] = mapped_column(
        ForeignKey("vm_nic.uuid", ondelete="SET NULL"), unique=True, default=None
    )
    guest_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
