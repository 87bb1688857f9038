from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin, new_uuid


class L3NetworkVO(ResourceMixin, Base):
    """An IP network on an L2 network, with IP ranges, DNS servers and network services."""

    __tablename__ = "l3_network"
    resource_type = "L3NetworkVO"

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    l2_network_uuid: Mapped[str] = mapped_column(ForeignKey("l2_network.uuid"), index=True)
    type: Mapped[str] = mapped_column(String(64), default="L3BasicNetwork")
    category: Mapped[str] = mapped_column(String(32), default="Private")
    """Private (guests) or Public (where appliances take their public address)."""
    dns_domain: Mapped[str | None] = mapped_column(String(255), default=None)
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    ip_version: Mapped[int] = mapped_column(Integer, default=4)


class IpRangeVO(ResourceMixin, Base):
    """Addresses of an L3 network that IPAM hands out: ``startIp``..``endIp`` in the
    network of ``gateway``/``netmask`` (the gateway is outside the range)."""

    __tablename__ = "ip_range"
    resource_type = "IpRangeVO"

    l3_network_uuid: Mapped[str] = mapped_column(ForeignKey("l3_network.uuid"), index=True)
    start_ip: Mapped[str] = mapped_column(String(64))
    end_ip: Mapped[str] = mapped_column(String(64))
    netmask: Mapped[str] = mapped_column(String(64))
    gateway: Mapped[str] = mapped_column(String(64))
    network_cidr: Mapped[str] = mapped_column(String(64))
    prefix_len: Mapped[int] = mapped_column(Integer)


class UsedIpVO(Base):
    """An address taken from an IP range; unique per L3 network, so two allocations can
    never take the same address (the insert of the second fails)."""

    __tablename__ = "used_ip"
    __table_args__ = (UniqueConstraint("l3_network_uuid", "ip"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    ip_range_uuid: Mapped[str] = mapped_column(ForeignKey("ip_range.uuid"), index=True)
    l3_network_uuid: Mapped[str] = mapped_column(ForeignKey("l3_network.uuid"), index=True)
    ip: Mapped[str] = mapped_column(String(64))
    ip_in_long: Mapped[int] = mapped_column(BigInteger)
    gateway: Mapped[str] = mapped_column(String(64))
    netmask: Mapped[str] = mapped_column(String(64))
    owner: Mapped[str] = mapped_column(String(64), default="")
    """What holds it, e.g. ``VmNic`` or ``ApplianceVmNic``."""


class L3NetworkDnsVO(Base):
    __tablename__ = "l3_network_dns"
    __table_args__ = (UniqueConstraint("l3_network_uuid", "dns"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    l3_network_uuid: Mapped[str] = mapped_column(ForeignKey("l3_network.uuid"), index=True)
    dns: Mapped[str] = mapped_column(String(64))
    position: Mapped[int] = mapped_column(Integer, default=0)


class VmNicVO(ResourceMixin, Base):
    """A VM's (or an appliance's) NIC on an L3 network, holding one used IP."""

    __tablename__ = "vm_nic"
    resource_type = "VmNicVO"

    vm_instance_uuid: Mapped[str] = mapped_column(String(32), index=True)
    l3_network_uuid: Mapped[str] = mapped_column(ForeignKey("l3_network.uuid"), index=True)
    used_ip_uuid: Mapped[str | None] = mapped_column(ForeignKey("used_ip.uuid"), default=None)
    ip: Mapped[str | None] = mapped_column(String(64), default=None)
    netmask: Mapped[str | None] = mapped_column(String(64), default=None)
    gateway: Mapped[str | None] = mapped_column(String(64), default=None)
    mac: Mapped[str] = mapped_column(String(17), unique=True)
    device_id: Mapped[int] = mapped_column(Integer, default=0)
    internal_name: Mapped[str] = mapped_column(String(15))
    """The tap device on the host (``zslt…``)."""
    type: Mapped[str] = mapped_column(String(32), default="VNIC")
    """``VNIC`` for a VM, ``ApplianceVmNic`` for an appliance."""
    meta_data: Mapped[str | None] = mapped_column(String(64), default=None)
    """An appliance NIC's role: ``public`` or ``guest``."""
