"""The L2 network service: networks of pluggable types, attached to clusters and
realised on their hosts (and on every host that connects later)."""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.cluster.models import ClusterVO
from core.host.connect import CHAIN as HOST_CONNECT_CHAIN
from core.host.connect import HostConnectData
from core.host.models import HostVO
from core.kernel.api import QueryResult
from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.errors import argerr, not_found, operr
from core.kernel.extensions import Plugin
from core.kernel.flow import NoRollbackFlow
from core.kernel.query import run_query
from core.kernel.service import Service, handles
from core.network.l2.api import (
    AttachL2NetworkToCluster,
    CreateL2NoVlanNetwork,
    DeleteL2Network,
    DetachL2NetworkFromCluster,
    QueryL2Network,
)
from core.network.l2.extension_points import L2NetworkFactory, L2NetworkRealizationExtensionPoint
from core.network.l2.models import L2NetworkClusterRefVO, L2NetworkVO
from core.network.l3.models import L3NetworkVO
from core.network.l3.nic_usage import nics_on_l2_in_cluster
from core.tag.plugin import TagPlugin, delete_all_tags

log = logging.getLogger(__name__)


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

    def realization(self, l2_type: str) -> L2NetworkRealizationExtensionPoint:
        for ext in self.node.registry.extensions(L2NetworkRealizationExtensionPoint):
            if ext.l2_network_type == l2_type:
                return ext
        raise operr(f"no plugin realises L2 networks of type {l2_type} on hosts")

    @handles(QueryL2Network)
    async def query(self, msg: QueryL2Network) -> QueryResult:
        """The generic query; each L2 network also says ``attachedClusterUuids``."""

        def run(session: Session) -> QueryResult:
            result = run_query(session, msg)
            return QueryResult(with_clusters(session, result.inventories), result.total)

        return await self.node.db.run(run)

    # -- create / delete ------------------------------------------------------------------

    @handles(CreateL2NoVlanNetwork)
    async def create_no_vlan(self, msg: CreateL2NoVlanNetwork) -> dict[str, Any]:
        return await self._create("L2NoVlanNetwork", msg)

    async def _create(self, l2_type: str, msg: Any) -> dict[str, Any]:
        factory = self.factory(l2_type)
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            l2 = L2NetworkVO(
                name=msg.name,
                description=msg.description,
                zone_uuid=msg.zone_uuid,
                type=l2_type,
                physical_interface=msg.physical_interface,
            )
            factory.create(session, l2, msg)
            session.add(l2)
            session.flush()
            tags.create_tags_from_message(session, msg, L2NetworkVO.resource_type, l2.uuid)
            return l2.to_inventory()

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
            return l2.to_inventory(), attached

        l2, attached = await self.node.db.run(check)
        if attached:
            return l2
        done: list[str] = []
        try:
            for host_uuid in await self._connected_hosts(msg.cluster_uuid):
                await self.realization(l2["type"]).realize(l2, host_uuid)
                done.append(host_uuid)
        except BaseException:
            for host_uuid in reversed(done):
                await self._unrealize_quietly(l2, host_uuid)
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
            return l2.to_inventory(), attached

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

    async def _connected_hosts(self, cluster_uuid: str) -> list[str]:
        return await self.node.db.run(
            lambda s: list(
                s.scalars(
                    select(HostVO.uuid).where(
                        HostVO.cluster_uuid == cluster_uuid, HostVO.status == "Connected"
                    )
                )
            )
        )

    async def _unrealize_on_cluster(self, l2: dict[str, Any], cluster_uuid: str) -> None:
        for host_uuid in await self._connected_hosts(cluster_uuid):
            await self.realization(l2["type"]).unrealize(l2, host_uuid)

    async def _unrealize_quietly(self, l2: dict[str, Any], host_uuid: str) -> None:
        try:
            await self.realization(l2["type"]).unrealize(l2, host_uuid)
        except Exception as exc:  # rolling back: report, go on with the others
            log.warning("cannot take L2 network %s off host %s: %s", l2["name"], host_uuid, exc)

    async def realize_on_host(self, host_uuid: str, cluster_uuid: str) -> None:
        """Every L2 network attached to the host's cluster (a host connect step)."""

        def attached(session: Session) -> list[dict[str, Any]]:
            return [
                l2.to_inventory()
                for l2 in session.scalars(
                    select(L2NetworkVO)
                    .join(
                        L2NetworkClusterRefVO,
                        L2NetworkClusterRefVO.l2_network_uuid == L2NetworkVO.uuid,
                    )
                    .where(L2NetworkClusterRefVO.cluster_uuid == cluster_uuid)
                )
            ]

        for l2 in await self.node.db.run(attached):
            await self.realization(l2["type"]).realize(l2, host_uuid)


class L2NetworkRealizeOnHostConnectFlow(NoRollbackFlow):
    """A connecting host gets every L2 network of its cluster (bridges are idempotent)."""

    async def run(self, data: HostConnectData) -> None:  # type: ignore[override]
        node, host_uuid = data.node, data.host_uuid
        cluster_uuid = await node.db.run(
            lambda s: s.scalar(select(HostVO.cluster_uuid).where(HostVO.uuid == host_uuid))
        )
        await node.plugin(L2NetworkPlugin).realize_on_host(host_uuid, cluster_uuid)


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
