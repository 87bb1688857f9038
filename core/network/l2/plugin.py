"""The L2 network service: networks of pluggable types, attached to clusters and
realised on their hosts (and on every host that connects later)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts.events import L2NetworkUnrealizable
from core.cluster.models import ClusterVO
from core.host.connect import CHAIN as HOST_CONNECT_CHAIN
from core.host.connect import HostConnectData
from core.host.models import HostVO
from core.host.plugin import HostPlugin
from core.kernel.api import QueryResult
from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.db import new_uuid
from core.kernel.errors import OperationError, argerr, not_found, operr
from core.kernel.extensions import Plugin
from core.kernel.flow import NoRollbackFlow
from core.kernel.query import run_query
from core.kernel.service import Service, handles
from core.network.l2.api import (
    AttachL2NetworkToCluster,
    CreateL2NoVlanNetwork,
    CreateL2VlanNetwork,
    DeleteL2Network,
    DetachL2NetworkFromCluster,
    GetL2NetworkTypes,
    GetVSwitchTypes,
    QueryL2Network,
)
from core.network.l2.extension_points import (
    L2NetworkFactory,
    L2NetworkRealizationExtensionPoint,
    RealizationKey,
    VSwitchFactory,
)
from core.network.l2.models import L2NetworkClusterRefVO, L2NetworkVO, L2VlanNetworkVO
from core.network.l3.models import L3NetworkVO
from core.network.l3.nic_usage import nics_on_l2_in_cluster
from core.tag.plugin import TagPlugin, delete_all_tags

log = logging.getLogger(__name__)

UNREALIZABLE_PATH = L2NetworkUnrealizable.PATH
"""Published when a connecting host gets an attached L2 network no enabled plugin can
realise there (its vSwitch plugin disabled or removed): the host connects, the network
does not work on it, and the event says why."""


class L2NetworkPlugin(Plugin, Service, FlowChainContributor):
    implements = (Service, FlowChainContributor)
    service_id = "l2Network"

    def flow_insertions(self) -> list[FlowInsertion]:
        return [FlowInsertion(HOST_CONNECT_CHAIN, f"{__name__}.L2NetworkRealizeOnHostConnectFlow")]

    def factory(self, l2_type: str) -> L2NetworkFactory:
        factories = {f.type: f for f in self.node.registry.extensions(L2NetworkFactory)}
        if l2_type not in factories:
            raise argerr(
                f"L2 network type {l2_type} is not installed "
                f"(installed: {', '.join(sorted(factories)) or 'none'})"
            )
        return factories[l2_type]

    def v_switch(self, v_switch_type: str) -> VSwitchFactory:
        switches = {f.v_switch_type: f for f in self.node.registry.extensions(VSwitchFactory)}
        if v_switch_type not in switches:
            raise argerr(
                f"vSwitch type {v_switch_type} is not installed or its plugin is disabled "
                f"(installed: {', '.join(sorted(switches)) or 'none'})"
            )
        return switches[v_switch_type]

    def realization_keys(self) -> dict[RealizationKey, L2NetworkRealizationExtensionPoint]:
        keys: dict[RealizationKey, L2NetworkRealizationExtensionPoint] = {}
        for ext in self.node.registry.extensions(L2NetworkRealizationExtensionPoint):
            for key in ext.realization_keys:
                keys.setdefault(key, ext)
        return keys

    def realization(
        self, l2: dict[str, Any], hypervisor_type: str
    ) -> L2NetworkRealizationExtensionPoint:
        key = RealizationKey(l2["type"], l2["vSwitchType"], hypervisor_type)
        ext = self.realization_keys().get(key)
        if ext is None:
            raise operr(
                f"no enabled plugin realises {key.l2_network_type} networks with vSwitch type "
                f"{key.v_switch_type} on {key.hypervisor_type} hosts"
            )
        return ext

    def realizable(self, l2_type: str, v_switch_type: str) -> bool:
        """Whether some enabled plugin realises such networks on some hypervisor."""
        return any(k[:2] == (l2_type, v_switch_type) for k in self.realization_keys())

    @handles(GetL2NetworkTypes)
    async def l2_network_types(self, _msg: GetL2NetworkTypes) -> dict[str, Any]:
        types = sorted(f.type for f in self.node.registry.extensions(L2NetworkFactory))
        return {"types": types}

    @handles(GetVSwitchTypes)
    async def v_switch_types(self, _msg: GetVSwitchTypes) -> dict[str, Any]:
        switches = sorted(f.v_switch_type for f in self.node.registry.extensions(VSwitchFactory))
        keys = sorted(self.realization_keys())
        return {
            "types": switches,
            "realizations": [
                {
                    "l2NetworkType": k.l2_network_type,
                    "vSwitchType": k.v_switch_type,
                    "hypervisorType": k.hypervisor_type,
                }
                for k in keys
            ],
        }

    @handles(QueryL2Network)
    async def query(self, msg: QueryL2Network) -> QueryResult:
        """The generic query; each L2 network also says ``attachedClusterUuids``."""

        def run(session: Session) -> QueryResult:
            result = run_query(session, msg)
            return QueryResult(self._details(session, result.inventories), result.total)

        return await self.node.db.run(run)

    # -- create / delete ------------------------------------------------------------------

    @handles(CreateL2NoVlanNetwork)
    async def create_no_vlan(self, msg: CreateL2NoVlanNetwork) -> dict[str, Any]:
        return await self._create(msg)

    @handles(CreateL2VlanNetwork)
    async def create_vlan(self, msg: CreateL2VlanNetwork) -> dict[str, Any]:
        return await self._create(msg)

    async def _create(self, msg: CreateL2NoVlanNetwork) -> dict[str, Any]:
        """The type's factory checks the message; the vSwitch type names the switch."""
        factory, switch = self.factory(msg.l2_type), self.v_switch(msg.v_switch_type)
        if not self.realizable(msg.l2_type, msg.v_switch_type):
            raise argerr(
                f"no enabled plugin realises {msg.l2_type} networks with vSwitch type "
                f"{msg.v_switch_type} on any host"
            )
        tags = self.node.plugin(TagPlugin)
        vlan = msg.vlan if isinstance(msg, CreateL2VlanNetwork) else None

        def create(session: Session) -> dict[str, Any]:
            l2 = L2NetworkVO(
                uuid=new_uuid(),
                name=msg.name,
                description=msg.description,
                zone_uuid=msg.zone_uuid,
                type=msg.l2_type,
                v_switch_type=msg.v_switch_type,
                physical_interface=msg.physical_interface or "",
                allow_default_route_interface=msg.allow_default_route_interface,
            )
            l2.bridge_name = switch.switch_name(session, l2, vlan)  # may pick another uuid
            factory.create(session, l2, msg)
            session.add(l2)
            session.flush()
            tags.create_tags_from_message(session, msg, L2NetworkVO.resource_type, l2.uuid)
            return self._details(session, [l2.to_inventory()])[0]

        return await self.node.db.run(create)

    @handles(DeleteL2Network)
    async def delete(self, msg: DeleteL2Network) -> None:
        def check(session: Session) -> tuple[dict[str, Any], list[str]]:
            l2 = _l2(session, msg.uuid)
            l3s = session.scalar(
                select(func.count())
                .select_from(L3NetworkVO)
                .where(L3NetworkVO.l2_network_uuid == msg.uuid)
            )
            if l3s:
                raise operr(
                    f"L2 network {l2.name} still has {l3s} L3 network(s); delete them first"
                )
            return l2.to_inventory(), _attached_clusters(session, msg.uuid)

        l2, clusters = await self.node.db.run(check)
        for cluster in clusters:
            await self._unrealize_on_cluster(l2, cluster)

        def delete(session: Session) -> None:
            for ref in session.scalars(
                select(L2NetworkClusterRefVO).where(
                    L2NetworkClusterRefVO.l2_network_uuid == msg.uuid
                )
            ):
                session.delete(ref)
            session.flush()
            vlan = session.get(L2VlanNetworkVO, msg.uuid)
            if vlan is not None:
                session.delete(vlan)
            row = session.get(L2NetworkVO, msg.uuid)
            if row is not None:
                session.delete(row)
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)

    # -- clusters ---------------------------------------------------------------------------

    @handles(AttachL2NetworkToCluster)
    async def attach(self, msg: AttachL2NetworkToCluster) -> dict[str, Any]:
        def check(session: Session) -> tuple[dict[str, Any], bool]:
            l2 = _l2(session, msg.l2_network_uuid)
            cluster = session.get(ClusterVO, msg.cluster_uuid)
            assert cluster is not None  # checked by the bus
            if cluster.zone_uuid != l2.zone_uuid:
                raise argerr(
                    f"L2 network {l2.name} and cluster {cluster.name} are in different zones"
                )
            attached = msg.cluster_uuid in _attached_clusters(session, l2.uuid)
            return self._details(session, [l2.to_inventory()])[0], attached

        l2, attached = await self.node.db.run(check)
        if attached:
            return l2
        hosts = await self._connected_hosts(msg.cluster_uuid)
        for _uuid, hypervisor_type in hosts:  # refused before anything is made
            self.realization(l2, hypervisor_type)
        done: list[tuple[str, str]] = []
        try:
            for host in hosts:
                await self._realize(l2, *host)
                done.append(host)
        except BaseException:
            for host in reversed(done):
                await self._unrealize_quietly(l2, *host)
            raise

        def record(session: Session) -> None:
            session.add(
                L2NetworkClusterRefVO(l2_network_uuid=l2["uuid"], cluster_uuid=msg.cluster_uuid)
            )

        await self.node.db.run(record)
        return l2

    @handles(DetachL2NetworkFromCluster)
    async def detach(self, msg: DetachL2NetworkFromCluster) -> dict[str, Any]:
        def check(session: Session) -> tuple[dict[str, Any], bool]:
            l2 = _l2(session, msg.l2_network_uuid)
            attached = msg.cluster_uuid in _attached_clusters(session, l2.uuid)
            in_use = nics_on_l2_in_cluster(session, l2.uuid, msg.cluster_uuid)
            if attached and in_use:
                raise operr(
                    f"L2 network {l2.name} is used by {in_use} NIC(s) in that cluster; "
                    "delete their VMs first"
                )
            return self._details(session, [l2.to_inventory()])[0], attached

        l2, attached = await self.node.db.run(check)
        if not attached:
            return l2
        await self._unrealize_on_cluster(l2, msg.cluster_uuid)

        def forget(session: Session) -> None:
            for ref in session.scalars(
                select(L2NetworkClusterRefVO).where(
                    L2NetworkClusterRefVO.l2_network_uuid == l2["uuid"],
                    L2NetworkClusterRefVO.cluster_uuid == msg.cluster_uuid,
                )
            ):
                session.delete(ref)

        await self.node.db.run(forget)
        return l2

    # -- hosts --------------------------------------------------------------------------------

    async def _connected_hosts(self, cluster_uuid: str) -> list[tuple[str, str]]:
        """(uuid, hypervisor type) of the cluster's connected hosts."""
        return await self.node.db.run(
            lambda s: [
                (uuid, hypervisor)
                for uuid, hypervisor in s.execute(
                    select(HostVO.uuid, HostVO.hypervisor_type).where(
                        HostVO.cluster_uuid == cluster_uuid, HostVO.status == "Connected"
                    )
                )
            ]
        )

    async def _realize(self, l2: dict[str, Any], host_uuid: str, hypervisor_type: str) -> None:
        agent = await self.node.plugin(HostPlugin).agent_of(host_uuid)
        await self.realization(l2, hypervisor_type).realize(l2, host_uuid, agent)

    async def _unrealize(self, l2: dict[str, Any], host_uuid: str, hypervisor_type: str) -> None:
        agent = await self.node.plugin(HostPlugin).agent_of(host_uuid)
        await self.realization(l2, hypervisor_type).unrealize(l2, host_uuid, agent)

    async def _unrealize_on_cluster(self, l2: dict[str, Any], cluster_uuid: str) -> None:
        for host in await self._connected_hosts(cluster_uuid):
            await self._unrealize(l2, *host)

    async def _unrealize_quietly(
        self, l2: dict[str, Any], host_uuid: str, hypervisor_type: str
    ) -> None:
        try:
            await self._unrealize(l2, host_uuid, hypervisor_type)
        except Exception as exc:  # rolling back: report, go on with the others
            log.warning("cannot take L2 network %s off host %s: %s", l2["name"], host_uuid, exc)

    async def realize_on_host(self, host_uuid: str, cluster_uuid: str) -> None:
        """Every L2 network attached to the host's cluster (a host connect step).  One that
        no enabled plugin realises on this host is reported (UNREALIZABLE_PATH), not made:
        the host still connects, and what does work there keeps working."""

        def attached(session: Session) -> tuple[str, list[dict[str, Any]]]:
            hypervisor = session.scalar(
                select(HostVO.hypervisor_type).where(HostVO.uuid == host_uuid)
            )
            l2s = session.scalars(
                select(L2NetworkVO)
                .join(
                    L2NetworkClusterRefVO,
                    L2NetworkClusterRefVO.l2_network_uuid == L2NetworkVO.uuid,
                )
                .where(L2NetworkClusterRefVO.cluster_uuid == cluster_uuid)
            )
            return hypervisor or "", self._details(session, [l2.to_inventory() for l2 in l2s])

        hypervisor_type, l2s = await self.node.db.run(attached)
        for l2 in l2s:
            try:
                self.realization(l2, hypervisor_type)
            except OperationError as exc:
                log.warning(
                    "L2 network %s is not realised on host %s: %s",
                    l2["name"],
                    host_uuid,
                    exc.error.description,
                )
                event = L2NetworkUnrealizable(
                    l2_network_uuid=l2["uuid"],
                    l2_network_name=l2["name"],
                    host_uuid=host_uuid,
                    reason=exc.error.description,
                )
                self.node.events.publish(event.PATH, event.to_json())
                continue
            await self._realize(l2, host_uuid, hypervisor_type)

    def _details(self, session: Session, l2s: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The inventories with ``attachedClusterUuids``, ``vlan`` (a VLAN network's) and
        ``realizable`` (whether an enabled plugin realises the network on some host)."""
        if not l2s:
            return l2s
        uuids = [l2["uuid"] for l2 in l2s]
        vlans = {
            uuid: vlan
            for uuid, vlan in session.execute(
                select(L2VlanNetworkVO.uuid, L2VlanNetworkVO.vlan).where(
                    L2VlanNetworkVO.uuid.in_(uuids)
                )
            )
        }
        return [
            {
                **l2,
                **({"vlan": vlans[l2["uuid"]]} if l2["uuid"] in vlans else {}),
                "realizable": self.realizable(l2["type"], l2["vSwitchType"]),
            }
            for l2 in with_clusters(session, l2s)
        ]


class L2NetworkRealizeOnHostConnectFlow(NoRollbackFlow):
    """A connecting host gets every L2 network of its cluster (bridges are idempotent)."""

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node, host_uuid = data.node, data.host_uuid
        cluster_uuid = await node.db.run(lambda s: _host(s, host_uuid).cluster_uuid)
        await node.plugin(L2NetworkPlugin).realize_on_host(host_uuid, cluster_uuid)


def _host(session: Session, uuid: str) -> HostVO:
    host = session.get(HostVO, uuid)
    if host is None:
        raise not_found(HostVO.resource_type, uuid)
    return host


def _l2(session: Session, uuid: str) -> L2NetworkVO:
    l2 = session.get(L2NetworkVO, uuid)
    if l2 is None:
        raise not_found(L2NetworkVO.resource_type, uuid)
    return l2


def with_clusters(session: Session, l2s: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The L2 inventories, each with the sorted uuids of the clusters it is attached to
    (one query for the page)."""
    if not l2s:
        return l2s
    ref = L2NetworkClusterRefVO.__table__.c
    attached: dict[str, list[str]] = {}
    for l2_uuid, cluster_uuid in session.execute(
        select(ref.l2_network_uuid, ref.cluster_uuid).where(
            ref.l2_network_uuid.in_([l2["uuid"] for l2 in l2s])
        )
    ):
        attached.setdefault(l2_uuid, []).append(cluster_uuid)
    return [{**l2, "attachedClusterUuids": sorted(attached.get(l2["uuid"], []))} for l2 in l2s]


def _attached_clusters(session: Session, l2_uuid: str) -> list[str]:
    return list(
        session.scalars(
            select(L2NetworkClusterRefVO.cluster_uuid).where(
                L2NetworkClusterRefVO.l2_network_uuid == l2_uuid
            )
        )
    )
