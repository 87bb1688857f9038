from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.network.l2.models import L2NetworkVO

INTERFACE_NAME = r"[A-Za-z0-9_.:@-]{1,15}"


class CreateL2NoVlanNetwork(ApiMessage):
    """An L2 network without VLAN: a bridge on each host, enslaving ``physicalInterface``
    (empty: an isolated bridge that only VMs and appliances share)."""

    tag_resource_type: ClassVar[str] = "L2NetworkVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    zone_uuid: str = param(required=True, resource_type="ZoneVO")
    physical_interface: str = param(
        max_length=15, regex=INTERFACE_NAME, description="a host interface, or empty"
    )
    allow_default_route_interface: bool = param(
        default=False,
        description="allow enslaving the interface that carries the host's default route",
    )


class AttachL2NetworkToCluster(ApiMessage):
    """Realise an L2 network on every host of a cluster (and on hosts that join it)."""

    l2_network_uuid: str = param(required=True, resource_type="L2NetworkVO")
    cluster_uuid: str = param(required=True, resource_type="ClusterVO")

    def sync_signature(self) -> str:
        return f"L2Network-{self.l2_network_uuid}"


class DetachL2NetworkFromCluster(ApiMessage):
    """Take an L2 network off a cluster's hosts (refused while it is in use there)."""

    l2_network_uuid: str = param(required=True, resource_type="L2NetworkVO")
    cluster_uuid: str = param(required=True, resource_type="ClusterVO")

    def sync_signature(self) -> str:
        return f"L2Network-{self.l2_network_uuid}"


class DeleteL2Network(ApiMessage):
    """Delete an L2 network that has no L3 network; it is detached from every cluster."""

    uuid: str = param(required=True, resource_type="L2NetworkVO")

    def sync_signature(self) -> str:
        return f"L2Network-{self.uuid}"


class QueryL2Network(QueryMessage):
    """Query L2 networks."""

    model = L2NetworkVO
