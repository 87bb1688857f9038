from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class VirtualRouterOfferingVO(ResourceMixin, Base):
    """What a virtual router is made from: its zone and its public network.

    A namespace appliance needs no image, CPU or memory; those fields come with an
    appliance-VM backend."""

    __tablename__ = "virtual_router_offering"
    resource_type = "VirtualRouterOfferingVO"

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    public_network_uuid: Mapped[str] = mapped_column(ForeignKey("l3_network.uuid"), index=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
