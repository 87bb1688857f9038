"""The L3 network service: IP networks on L2 networks, their ranges, DNS and IPAM."""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import kvm
from core.host.connect import CHAIN as HOST_CONNECT_CHAIN
from core.host.models import HostVO
from core.host.plugin import HostPlugin
from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.errors import argerr, not_found, operr
from core.kernel.extensions import Plugin
from core.kernel.service import Service, handles
from core.network.l2.models import L2NetworkClusterRefVO, L2NetworkVO
from core.network.l2.plugin import L2NetworkRealizeOnHostConnectFlow
from core.network.l3.api import (
    AddDnsToL3Network,
    AddIpRange,
    AddIpRangeByNetworkCidr,
    CreateL3Network,
    DeleteIpRange,
    DeleteL3Network,
    QueryIpRange,
    QueryL3Network,
    QueryVmNic,
    RemoveDnsFromL3Network,
)
from core.network.l3.extension_points import L3NetworkDeletionExtensionPoint
from core.network.l3.host_nat import (
    HostNatOnHostConnectFlow,
    host_nat_entries,
    remove_host_nat,
    set_host_nat,
)
from core.network.l3.ipam import overlaps, parse_range, range_by_cidr
from core.network.l3.models import IpRangeVO, L3NetworkDnsVO, L3NetworkVO, UsedIpVO
from core.network.l3.nic_usage import nics_on_l3
from core.network.l3.system_tags import HOST_NAT, STATIC_IP
from core.network.service.plugin import delete_l3_services
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.tag.plugin import TagPlugin, delete_all_tags


class L3NetworkPlugin(Plugin, Service, SystemTagProvider, FlowChainContributor):
    implements = (Service, SystemTagProvider, FlowChainContributor)
    service_id = "l3Network"
    queries = (QueryL3Network, QueryIpRange, QueryVmNic)

    def flow_insertions(self) -> list[FlowInsertion]:
        return [
            FlowInsertion(
                HOST_CONNECT_CHAIN,
                f"{HostNatOnHostConnectFlow.__module__}.{HostNatOnHostConnectFlow.__name__}",
                after=f"{L2NetworkRealizeOnHostConnectFlow.__module__}."
                f"{L2NetworkRealizeOnHostConnectFlow.__name__}",
            )
        ]

    def system_tags(self) -> list[SystemTagDef]:
        return [STATIC_IP, HOST_NAT]

    @handles(CreateL3Network)
    async def create(self, msg: CreateL3Network) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            l2 = session.get(L2NetworkVO, msg.l2_network_uuid)
            assert l2 is not None  # checked by the bus
            if HOST_NAT.pattern in msg.system_tags and (
                msg.category != "Public" or l2.physical_interface
            ):
                raise argerr(
                    "hostNat: only a Public L3 network on an isolated L2 network (no "
                    "physical interface) can have the host as its gateway"
                )
            l3 = L3NetworkVO(
                name=msg.name,
                description=msg.description,
                zone_uuid=l2.zone_uuid,
                l2_network_uuid=l2.uuid,
                category=msg.category,
                dns_domain=msg.dns_domain or None,
            )
            session.add(l3)
            session.flush()
            tags.create_tags_from_message(session, msg, L3NetworkVO.resource_type, l3.uuid)
            return l3.to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteL3Network)
    async def delete(self, msg: DeleteL3Network) -> None:
        def check(session: Session) -> dict[str, Any]:
            l3 = _l3(session, msg.uuid)
            nics = nics_on_l3(session, l3.uuid)
            if nics:
                raise operr(
                    f"L3 network {l3.name} is used by {nics} VM NIC(s); delete their VMs first"
                )
            return l3.to_inventory()

        l3 = await self.node.db.run(check)
        # extensions() takes type[T]: mypy refuses an abstract class there (core.kernel.extensions)
        for ext in self.node.registry.extensions(L3NetworkDeletionExtensionPoint):
            await ext.before_delete_l3_network(l3)
        host_nat = await self.node.db.run(lambda s: host_nat_entries(s, l3_uuid=l3["uuid"]))

        def delete(session: Session) -> None:
            row = _l3(session, msg.uuid)
            used = _used_count(session, UsedIpVO.l3_network_uuid == row.uuid)
            if used:
                raise operr(f"L3 network {row.name} still has {used} address(es) in use")
            ranges = list(
                session.scalars(select(IpRangeVO.uuid).where(IpRangeVO.l3_network_uuid == row.uuid))
            )
            delete_l3_services(session, row.uuid)
            for model in (L3NetworkDnsVO, IpRangeVO):
                for item in session.scalars(select(model).where(model.l3_network_uuid == row.uuid)):
                    session.delete(item)
            session.flush()
            session.delete(row)
            delete_all_tags(session, [row.uuid, *ranges])

        await self.node.db.run(delete)
        await remove_host_nat(self.node, host_nat)

    # -- IP ranges -------------------------------------------------------------------------

    @handles(AddIpRange)
    async def add_ip_range(self, msg: AddIpRange) -> dict[str, Any]:
        return await self._add_range(msg, msg.start_ip, msg.end_ip, msg.netmask, msg.gateway)

    @handles(AddIpRangeByNetworkCidr)
    async def add_ip_range_by_cidr(self, msg: AddIpRangeByNetworkCidr) -> dict[str, Any]:
        return await self._add_range(msg, *range_by_cidr(msg.network_cidr, msg.gateway))

    async def _add_range(
        self, msg: Any, start_ip: str, end_ip: str, netmask: str, gateway: str
    ) -> dict[str, Any]:
        spec = parse_range(start_ip, end_ip, netmask, gateway)
        new = (int(spec.start), int(spec.end))
        tags = self.node.plugin(TagPlugin)

        def add(session: Session) -> dict[str, Any]:
            l3 = _l3(session, msg.l3_network_uuid)
            for other in session.scalars(
                select(IpRangeVO).where(IpRangeVO.l3_network_uuid == l3.uuid)
            ):
                if other.network_cidr != str(spec.network) or other.gateway != str(spec.gateway):
                    raise argerr(
                        f"every range of L3 network {l3.name} is in {other.network_cidr} with "
                        f"gateway {other.gateway}; {start_ip}-{end_ip} is in {spec.network} "
                        f"with gateway {spec.gateway}"
                    )
            # Ranges on the same L2 network share one broadcast domain: none may overlap.
            for other, other_l3 in session.execute(
                select(IpRangeVO, L3NetworkVO)
                .join(L3NetworkVO, L3NetworkVO.uuid == IpRangeVO.l3_network_uuid)
                .where(L3NetworkVO.l2_network_uuid == l3.l2_network_uuid)
            ):
                span = (
                    int(ipaddress.IPv4Address(other.start_ip)),
                    int(ipaddress.IPv4Address(other.end_ip)),
                )
                if overlaps(new, span):
                    raise argerr(
                        f"the range {start_ip}-{end_ip} overlaps the range {other.name} "
                        f"({other.start_ip}-{other.end_ip}) of L3 network {other_l3.name}"
                    )
            row = IpRangeVO(
                name=msg.name,
                description=msg.description,
                l3_network_uuid=l3.uuid,
                start_ip=str(spec.start),
                end_ip=str(spec.end),
                netmask=str(spec.network.netmask),
                gateway=str(spec.gateway),
                network_cidr=str(spec.network),
                prefix_len=spec.network.prefixlen,
            )
            session.add(row)
            session.flush()
            tags.create_tags_from_message(session, msg, IpRangeVO.resource_type, row.uuid)
            return row.to_inventory()

        await self._check_host_routes(msg.l3_network_uuid, spec.network)
        added = await self.node.db.run(add)
        entries = await self.node.db.run(lambda s: host_nat_entries(s, l3_uuid=msg.l3_network_uuid))
        try:
            await set_host_nat(self.node, entries)
        except BaseException:
            await remove_host_nat(self.node, entries)
            await self.node.db.run(lambda s: _delete_range(s, added["uuid"]))
            raise
        return added

    async def _check_host_routes(self, l3_uuid: str, network: ipaddress.IPv4Network) -> None:
        """Refuse a network that overlaps a route of a host that may carry it (the hosts
        of the clusters its L2 network is attached to, else every host of its zone): the
        host would send the network's traffic the wrong way.  Routes on the L2 network's
        own bridge are its own."""

        def hosts(session: Session) -> tuple[str, list[tuple[str, str]]]:
            l3 = _l3(session, l3_uuid)
            l2 = session.get(L2NetworkVO, l3.l2_network_uuid)
            assert l2 is not None
            clusters = select(L2NetworkClusterRefVO.cluster_uuid).where(
                L2NetworkClusterRefVO.l2_network_uuid == l2.uuid
            )
            stmt = select(HostVO.uuid, HostVO.name).where(HostVO.status == "Connected")
            if session.scalar(clusters.limit(1)) is not None:
                stmt = stmt.where(HostVO.cluster_uuid.in_(clusters))
            else:
                stmt = stmt.where(HostVO.zone_uuid == l3.zone_uuid)
            return l2.bridge_name, [(uuid, name) for uuid, name in session.execute(stmt)]

        bridge, candidates = await self.node.db.run(hosts)
        for host_uuid, host_name in candidates:
            agent = await self.node.plugin(HostPlugin).agent_of(host_uuid)
            answer = await agent.send(kvm.HostRoutesCmd())
            for route in answer.routes:
                if route.interface == bridge:
                    continue
                destination = ipaddress.IPv4Network(route.destination, strict=False)
                if destination.overlaps(network):
                    via = f" via {route.interface}" if route.interface else ""
                    raise argerr(
                        f"the network {network} overlaps the route {destination}{via} "
                        f"of host {host_name}; choose another network"
                    )

    @handles(DeleteIpRange)
    async def delete_ip_range(self, msg: DeleteIpRange) -> None:
        def delete(session: Session) -> list[tuple[str, dict[str, str]]]:
            row = session.get(IpRangeVO, msg.uuid)
            if row is None:
                raise not_found(IpRangeVO.resource_type, msg.uuid)
            used = _used_count(session, UsedIpVO.ip_range_uuid == row.uuid)
            if used:
                raise operr(f"IP range {row.name} has {used} address(es) in use")
            before = host_nat_entries(session, l3_uuid=row.l3_network_uuid)
            _delete_range(session, row.uuid)
            after = host_nat_entries(session, l3_uuid=row.l3_network_uuid)
            return [entry for entry in before if entry not in after]

        await remove_host_nat(self.node, await self.node.db.run(delete))

    # -- DNS -------------------------------------------------------------------------------------

    @handles(AddDnsToL3Network)
    async def add_dns(self, msg: AddDnsToL3Network) -> dict[str, Any]:
        try:
            dns = str(ipaddress.IPv4Address(msg.dns.strip()))
        except ValueError:
            raise argerr(f"dns {msg.dns!r} is not an IPv4 address") from None

        def add(session: Session) -> dict[str, Any]:
            l3 = _l3(session, msg.l3_network_uuid)
            current = list(
                session.scalars(
                    select(L3NetworkDnsVO).where(L3NetworkDnsVO.l3_network_uuid == l3.uuid)
                )
            )
            if any(d.dns == dns for d in current):
                raise argerr(f"L3 network {l3.name} already has the DNS server {dns}")
            session.add(L3NetworkDnsVO(l3_network_uuid=l3.uuid, dns=dns, position=len(current)))
            return l3.to_inventory()

        return await self.node.db.run(add)

    @handles(RemoveDnsFromL3Network)
    async def remove_dns(self, msg: RemoveDnsFromL3Network) -> dict[str, Any]:
        def remove(session: Session) -> dict[str, Any]:
            l3 = _l3(session, msg.l3_network_uuid)
            for row in session.scalars(
                select(L3NetworkDnsVO).where(
                    L3NetworkDnsVO.l3_network_uuid == l3.uuid, L3NetworkDnsVO.dns == msg.dns.strip()
                )
            ):
                session.delete(row)
            return l3.to_inventory()

        return await self.node.db.run(remove)


def _l3(session: Session, uuid: str) -> L3NetworkVO:
    l3 = session.get(L3NetworkVO, uuid)
    if l3 is None:
        raise not_found(L3NetworkVO.resource_type, uuid)
    return l3


def _delete_range(session: Session, uuid: str) -> None:
    row = session.get(IpRangeVO, uuid)
    if row is not None:
        session.delete(row)
    delete_all_tags(session, [uuid])


def _used_count(session: Session, condition: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(UsedIpVO).where(condition)) or 0)
