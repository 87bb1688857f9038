from __future__ import annotations

from typing import ClassVar

from sqlalchemy.sql import ColumnElement

from core.appliance.models import ApplianceVmVO
from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.virtual_router.models import VirtualRouterOfferingVO

VIRTUAL_ROUTER = "VirtualRouter"


class CreateVirtualRouterOffering(ApiMessage):
    """What virtual routers of a zone are made from: their public network.  The zone's
    first offering is its default; ``isDefault`` makes another one the default."""

    tag_resource_type: ClassVar[str] = "VirtualRouterOfferingVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    zone_uuid: str = param(required=True, resource_type="ZoneVO")
    public_network_uuid: str = param(required=True, resource_type="L3NetworkVO")
    is_default: bool = param(default=False)


class DeleteVirtualRouterOffering(ApiMessage):
    uuid: str = param(required=True, resource_type="VirtualRouterOfferingVO")


class QueryVirtualRouterOffering(QueryMessage):
    model = VirtualRouterOfferingVO


class _VirtualRouterOperation(ApiMessage):
    uuid: str = param(required=True, resource_type="ApplianceVmVO")

    def sync_signature(self) -> str:
        return f"Appliance-{self.uuid}"


class ReconnectVirtualRouter(_VirtualRouterOperation):
    """Make sure the router's namespace, NICs and agent are there, then replay its whole
    DNS, DHCP and SNAT state."""

    timeout = 300.0


class DestroyVirtualRouter(_VirtualRouterOperation):
    """Remove the router: namespace, veths, processes, files, nft table and its public
    address.  The next VM that needs it makes a new one."""

    timeout = 300.0


class QueryVirtualRouterVm(QueryMessage):
    """Query virtual routers (appliances of type VirtualRouter)."""

    model = ApplianceVmVO

    def base_filter(self) -> list[ColumnElement[bool]]:
        return [ApplianceVmVO.appliance_vm_type == VIRTUAL_ROUTER]
