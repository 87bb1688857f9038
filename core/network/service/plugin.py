"""The network service: providers (one row each, made at start) and the services each
L3 network uses, at most one provider per service type."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import argerr, not_found, operr
from core.kernel.extensions import Component, Plugin
from core.kernel.service import Service, handles
from core.network.l3.models import L3NetworkVO
from core.network.l3.nic_usage import nics_on_l3
from core.network.service.api import (
    AttachNetworkServiceToL3Network,
    DetachNetworkServiceFromL3Network,
    QueryNetworkServiceL3NetworkRef,
    QueryNetworkServiceProvider,
)
from core.network.service.extension_points import (
    NetworkServiceProviderType,
    NetworkServiceTypeExtensionPoint,
)
from core.network.service.models import NetworkServiceL3NetworkRefVO, NetworkServiceProviderVO
from core.network.service.spi import services_of

__all__ = ["NetworkServicePlugin", "delete_l3_services", "services_of"]


class NetworkServicePlugin(Plugin, Service, Component):
    implements = (Service, Component)
    order = 100  # providers exist before the plugins that start after it use them
    service_id = "networkService"
    queries = (QueryNetworkServiceProvider, QueryNetworkServiceL3NetworkRef)

    def _types(self) -> dict[str, NetworkServiceProviderType]:
        return {
            p.provider_type: p for p in self.node.registry.extensions(NetworkServiceProviderType)
        }

    def offered(self, provider_type: str) -> tuple[str, ...]:
        """The service types a provider offers: its own, then those plugins add to it."""
        own = self._types()[provider_type].service_types
        added = [
            t
            for ext in self.node.registry.extensions(NetworkServiceTypeExtensionPoint)
            if ext.provider_type == provider_type
            for t in ext.service_types
        ]
        return tuple(dict.fromkeys([*own, *added]))

    async def start(self) -> None:
        providers = self._types()
        offered = {provider_type: self.offered(provider_type) for provider_type in providers}

        def ensure(session: Session) -> None:
            rows = {row.type: row for row in session.scalars(select(NetworkServiceProviderVO))}
            for provider_type in providers:
                row = rows.get(provider_type)
                if row is None:
                    row = NetworkServiceProviderVO(
                        name=provider_type, type=provider_type, description=""
                    )
                    session.add(row)
                row.network_service_types = ",".join(offered[provider_type])

        await self.node.db.run(ensure)

    async def stop(self) -> None:
        pass

    async def provider_uuid(self, provider_type: str) -> str:
        uuid = await self.node.db.run(
            lambda s: s.scalar(
                select(NetworkServiceProviderVO.uuid).where(
                    NetworkServiceProviderVO.type == provider_type
                )
            )
        )
        if uuid is None:
            raise operr(f"network service provider {provider_type} is not installed")
        return uuid

    def _requested(
        self, session: Session, services: dict[str, Any]
    ) -> list[tuple[NetworkServiceProviderVO, NetworkServiceProviderType, list[str]]]:
        if not services:
            raise argerr("networkServices: name at least one provider and its service types")
        types = self._types()
        out = []
        for provider_uuid, wanted in services.items():
            row = session.get(NetworkServiceProviderVO, provider_uuid)
            if row is None:
                raise not_found(NetworkServiceProviderVO.resource_type, str(provider_uuid))
            if row.type not in types:
                raise argerr(f"network service provider {row.name} is not installed")
            if (
                not isinstance(wanted, list)
                or not wanted
                or not all(isinstance(t, str) for t in wanted)
            ):
                raise argerr(
                    f"networkServices: {provider_uuid} must map to a list of service types"
                )
            offered = self.offered(row.type)
            unknown = [t for t in wanted if t not in offered]
            if unknown:
                raise argerr(
                    f"provider {row.name} does not offer {', '.join(unknown)} "
                    f"(it offers {', '.join(offered)})"
                )
            out.append((row, types[row.type], list(dict.fromkeys(wanted))))
        return out

    @handles(AttachNetworkServiceToL3Network)
    async def attach(self, msg: AttachNetworkServiceToL3Network) -> dict[str, Any]:
        def attach(session: Session) -> dict[str, Any]:
            l3 = _l3(session, msg.l3_network_uuid)
            current = {r.network_service_type: r for r in _refs(session, l3.uuid)}
            for row, provider, wanted in self._requested(session, msg.network_services):
                for service_type in wanted:
                    ref = current.get(service_type)
                    if ref is not None and ref.network_service_provider_uuid != row.uuid:
                        raise argerr(
                            f"L3 network {l3.name} already gets {service_type} from another "
                            "provider; detach it first"
                        )
                provider.check_attach(session, l3, wanted)
                for service_type in wanted:
                    if service_type not in current:
                        ref = NetworkServiceL3NetworkRefVO(
                            l3_network_uuid=l3.uuid,
                            network_service_provider_uuid=row.uuid,
                            network_service_type=service_type,
                        )
                        session.add(ref)
                        current[service_type] = ref
            return l3.to_inventory()

        return await self.node.db.run(attach)

    @handles(DetachNetworkServiceFromL3Network)
    async def detach(self, msg: DetachNetworkServiceFromL3Network) -> dict[str, Any]:
        def detach(session: Session) -> dict[str, Any]:
            l3 = _l3(session, msg.l3_network_uuid)
            requested = self._requested(session, msg.network_services)
            in_use = nics_on_l3(session, l3.uuid)
            if in_use:
                raise operr(
                    f"L3 network {l3.name} has {in_use} NIC(s); its services cannot change "
                    "under them"
                )
            for row, _provider, wanted in requested:
                for ref in _refs(session, l3.uuid):
                    if (
                        ref.network_service_provider_uuid == row.uuid
                        and ref.network_service_type in wanted
                    ):
                        session.delete(ref)
            return l3.to_inventory()

        return await self.node.db.run(detach)


def delete_l3_services(session: Session, l3_uuid: str) -> None:
    """An L3 network is being deleted: it uses no service any more."""
    for ref in _refs(session, l3_uuid):
        session.delete(ref)


def _refs(session: Session, l3_uuid: str) -> list[NetworkServiceL3NetworkRefVO]:
    return list(
        session.scalars(
            select(NetworkServiceL3NetworkRefVO).where(
                NetworkServiceL3NetworkRefVO.l3_network_uuid == l3_uuid
            )
        )
    )


def _l3(session: Session, uuid: str) -> L3NetworkVO:
    l3 = session.get(L3NetworkVO, uuid)
    if l3 is None:
        raise not_found(L3NetworkVO.resource_type, uuid)
    return l3
