from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.network.l3.models import IpRangeVO, L3NetworkVO, VmNicVO

DOMAIN = r"[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*"


class CreateL3Network(ApiMessage):
    """An IP network on an L2 network."""

    tag_resource_type: ClassVar[str] = "L3NetworkVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    l2_network_uuid: str = param(required=True, resource_type="L2NetworkVO")
    category: str = param(default="Private", valid_values=("Private", "Public"))
    dns_domain: str = param(max_length=255, regex=DOMAIN, description="e.g. lab.lan")


class DeleteL3Network(ApiMessage):
    """Delete an L3 network no NIC uses, with its IP ranges and DNS servers."""

    uuid: str = param(required=True, resource_type="L3NetworkVO")

    def sync_signature(self) -> str:
        return f"L3Network-{self.uuid}"


class _IpRangeMessage(ApiMessage):
    tag_resource_type: ClassVar[str] = "IpRangeVO"
    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)

    def sync_signature(self) -> str:
        return f"L3Network-{self.l3_network_uuid}"


class AddIpRange(_IpRangeMessage):
    """Addresses IPAM may hand out, from ``startIp`` to ``endIp``."""

    start_ip: str = param(required=True, max_length=64)
    end_ip: str = param(required=True, max_length=64)
    netmask: str = param(required=True, max_length=64)
    gateway: str = param(required=True, max_length=64)


class AddIpRangeByNetworkCidr(_IpRangeMessage):
    """A whole network: the gateway is its first host address unless given."""

    network_cidr: str = param(required=True, max_length=64, description="e.g. 10.0.0.0/24")
    gateway: str = param(max_length=64)


class DeleteIpRange(ApiMessage):
    """Delete an IP range none of whose addresses is in use."""

    uuid: str = param(required=True, resource_type="IpRangeVO")


class AddDnsToL3Network(ApiMessage):
    """A DNS server the L3 network's guests are told about."""

    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")
    dns: str = param(required=True, max_length=64)

    def sync_signature(self) -> str:
        return f"L3Network-{self.l3_network_uuid}"


class RemoveDnsFromL3Network(ApiMessage):
    l3_network_uuid: str = param(required=True, resource_type="L3NetworkVO")
    dns: str = param(required=True, max_length=64)

    def sync_signature(self) -> str:
        return f"L3Network-{self.l3_network_uuid}"


class QueryL3Network(QueryMessage):
    """Query L3 networks."""

    model = L3NetworkVO


class QueryIpRange(QueryMessage):
    """Query IP ranges."""

    model = IpRangeVO


class QueryVmNic(QueryMessage):
    """Query the NICs of VMs and appliances (``type`` VNIC or ApplianceVmNic)."""

    model = VmNicVO
