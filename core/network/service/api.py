from __future__ import annotations

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.network.service.models import NetworkServiceL3NetworkRefVO, NetworkServiceProviderVO


class AttachNetworkServiceToL3Network(ApiMessage):
    """Let an L3 network use network services, e.g. ``{"<virtual router provider uuid>":
    ["DHCP", "DNS", "SNAT"]}`` (ZStack's shape: provider uuid -> service types)."""

    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")
    network_services: dict = param(
        required=True, description="provider uuid -> list of service types"
    )

    def sync_signature(self) -> str:
        return f"L3Network-{self.l3_network_uuid}"


class DetachNetworkServiceFromL3Network(ApiMessage):
    """Stop using network services on an L3 network no VM NIC uses."""

    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")
    network_services: dict = param(
        required=True, description="provider uuid -> list of service types"
    )

    def sync_signature(self) -> str:
        return f"L3Network-{self.l3_network_uuid}"


class QueryNetworkServiceProvider(QueryMessage):
    """Query network service providers (``networkServiceTypes`` lists what each offers)."""

    model = NetworkServiceProviderVO


class QueryNetworkServiceL3NetworkRef(QueryMessage):
    """Which L3 network uses which service from which provider."""

    model = NetworkServiceL3NetworkRefVO
