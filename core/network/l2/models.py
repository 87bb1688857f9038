from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin, new_uuid

LINUX_BRIDGE = "LinuxBridge"
"""The core's vSwitch type: a Linux bridge per network on each host."""


class L2NetworkVO(ResourceMixin, Base):
    """A broadcast domain: on each host, a switch of its vSwitch type (a Linux bridge named
    after the network, or what a plugin makes: several networks may share one switch,
    told apart by VLAN tags)."""

    __tablename__ = "l2_network"
    resource_type = "L2NetworkVO"

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    """The L2NetworkFactory type, e.g. L2NoVlanNetwork."""
    physical_interface: Mapped[str] = mapped_column(String(64), default="")
    """The host interface enslaved to the bridge; empty for an isolated bridge."""
    allow_default_route_interface: Mapped[bool] = mapped_column(Boolean, default=False)
    """Whether the interface carrying the host's default route may be enslaved."""
    v_switch_type: Mapped[str] = mapped_column(
        String(32), default=LINUX_BRIDGE, server_default=LINUX_BRIDGE
    )
    """ZStack's vSwitchType: which kind of switch realises the network (the L2 type says
    what the network is; the two are independent)."""
    bridge_name: Mapped[str] = mapped_column(String(15), index=True)
    """The switch on each host, named by the vSwitch type (unique for Linux bridges)."""


class L2NetworkClusterRefVO(Base):
    """An L2 network attached to a cluster: realised on each of its hosts."""

    __tablename__ = "l2_network_cluster_ref"
    __table_args__ = (UniqueConstraint("l2_network_uuid", "cluster_uuid"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    l2_network_uuid: Mapped[str] = mapped_column(ForeignKey("l2_network.uuid"), index=True)
    cluster_uuid: Mapped[str] = mapped_column(ForeignKey("cluster.uuid"), index=True)


class L2VlanNetworkVO(Base):
    """The VLAN of an L2VlanNetwork (ZStack's L2VlanNetworkVO): its frames carry this tag
    on the switch."""

    __tablename__ = "l2_vlan_network"

    uuid: Mapped[str] = mapped_column(
        ForeignKey("l2_network.uuid", ondelete="CASCADE"), primary_key=True
    )
    vlan: Mapped[int] = mapped_column(Integer)
