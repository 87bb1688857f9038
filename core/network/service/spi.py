"""What a network-service plugin may call: which provider serves which service of an L3."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.network.service.models import NetworkServiceL3NetworkRefVO, NetworkServiceProviderVO


def services_of(session: Session, l3_uuid: str) -> dict[str, str]:
    """Service type -> provider type for an L3 network (e.g. ``{"DHCP": "VirtualRouter"}``)."""
    return {
        service_type: provider_type
        for service_type, provider_type in session.execute(
            select(NetworkServiceL3NetworkRefVO.network_service_type, NetworkServiceProviderVO.type)
            .join(
                NetworkServiceProviderVO,
                NetworkServiceProviderVO.uuid
                == NetworkServiceL3NetworkRefVO.network_service_provider_uuid,
            )
            .where(NetworkServiceL3NetworkRefVO.l3_network_uuid == l3_uuid)
        )
    }
