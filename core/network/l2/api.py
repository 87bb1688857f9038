from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.network.l2.models import L2NetworkVO

INTERFACE_NAME = r"[A-Za-z0-9_.:@-]{1,15}"


class CreateL2NoVlanNetwork(ApiMessage):
    """An L2 network without VLAN: a switch on each host (a Linux bridge by default),
    enslaving ``physicalInterface`` (empty: an isolated switch that only VMs and
    appliances share)."""

    l2_type: ClassVar[str] = "L2NoVlanNetwork"
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
    v_switch_type: str = param(
        default="LinuxBridge",
        max_length=32,
        description="the kind of switch on each host (GetVSwitchTypes lists them)",
    )


class CreateL2VlanNetwork(CreateL2NoVlanNetwork):
    """An L2 network whose frames carry a VLAN tag on a switch shared with other networks
    on the same interface: needs a vSwitch type that tags (not LinuxBridge here)."""

    l2_type: ClassVar[str] = "L2VlanNetwork"
    vlan: int = param(required=True, number_range=(1, 4094))


class GetL2NetworkTypes(ApiMessage):
    """The L2 network types the enabled plugins provide."""

    read_only = True


class GetVSwitchTypes(ApiMessage):
    """The vSwitch types the enabled plugins provide, and which (L2 type, hypervisor)
    each realises."""

    read_only = True


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
