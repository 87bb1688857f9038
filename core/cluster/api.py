from __future__ import annotations

from typing import ClassVar

from core.cluster.models import ClusterVO
from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage

HYPERVISOR_TYPES = ("KVM", "Simulator")


class CreateCluster(ApiMessage):
    """Create a cluster of hosts of one hypervisor type in a zone."""

    tag_resource_type: ClassVar[str] = "ClusterVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    zone_uuid: str = param(required=True, resource_type="ZoneVO")
    hypervisor_type: str = param(default="KVM", valid_values=HYPERVISOR_TYPES)


class DeleteCluster(ApiMessage):
    """Delete a cluster that holds no host."""

    uuid: str = param(required=True, resource_type="ClusterVO")

    def sync_signature(self) -> str:
        return f"Cluster-{self.uuid}"


class QueryCluster(QueryMessage):
    """Query clusters."""

    model = ClusterVO
