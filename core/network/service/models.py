"""Network service providers and which of their services each L3 network uses."""

from __future__ import annotations

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin, new_uuid


class NetworkServiceProviderVO(ResourceMixin, Base):
    """Something that provides network services (the virtual router: DHCP, DNS, SNAT)."""

    __tablename__ = "network_service_provider"
    resource_type = "NetworkServiceProviderVO"

    type: Mapped[str] = mapped_column(String(64), unique=True)
    network_service_types: Mapped[str] = mapped_column(String(255), default="")
    """The service types it offers, comma-separated (``DHCP,DNS,SNAT``)."""


class NetworkServiceL3NetworkRefVO(Base):
    """L3 network ``l3NetworkUuid`` gets service ``networkServiceType`` from the provider.
    An L3 network has at most one provider per service type."""

    __tablename__ = "network_service_l3_network_ref"
    __table_args__ = (UniqueConstraint("l3_network_uuid", "network_service_type"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    l3_network_uuid: Mapped[str] = mapped_column(ForeignKey("l3_network.uuid"), index=True)
    network_service_provider_uuid: Mapped[str] = mapped_column(
        ForeignKey("network_service_provider.uuid"), index=True
    )
    network_service_type: Mapped[str] = mapped_column(String(64))
