from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin, new_uuid


class L2NetworkVO(ResourceMixin, Base):
    """A broadcast domain: on KVM hosts, a Linux bridge named after the network."""

    __tablename__ = "l2_network"
    resource_type = "L2NetworkVO"

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    type: Mapped[str] = mapped_column(String(64))
    """The L2NetworkFactory type, e.g. L2NoVlanNetwork."""
    physical_interface: Mapped[str] = mapped_column(String(64), default="")
    """The host interface enslaved to the bridge; empty for an isolated bridge."""
    allow_default_route_interface: Mapped[bool] = mapped_column(Boolean, default=False)
    """Whether the interface carrying the host's default route may be enslaved."""
    bridge_name: Mapped[str] = mapped_column(String(15), unique=True)


class L2NetworkClusterRefVO(Base):
    """An L2 network attached to a cluster: realised on each of its hosts."""

    __tablename__ = "l2_network_cluster_ref"
    __table_args__ = (UniqueConstraint("l2_network_uuid", "cluster_uuid"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    l2_network_uuid: Mapped[str] = mapped_column(ForeignKey("l2_network.uuid"), index=True)
    cluster_uuid: Mapped[str] = mapped_column(ForeignKey("cluster.uuid"), index=True)
