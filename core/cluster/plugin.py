"""Clusters: hosts of one hypervisor type inside a zone."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.cluster.api import CreateCluster, DeleteCluster, QueryCluster
from core.cluster.models import ClusterVO
from core.host.models import HostVO
from core.kernel.errors import not_found, operr
from core.kernel.extensions import Plugin
from core.kernel.service import Service, handles
from core.tag.plugin import TagPlugin, delete_all_tags


class ClusterPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "cluster"
    queries = (QueryCluster,)

    @handles(CreateCluster)
    async def create(self, msg: CreateCluster) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            cluster = ClusterVO(
                name=msg.name,
                description=msg.description,
                zone_uuid=msg.zone_uuid,
                hypervisor_type=msg.hypervisor_type,
            )
            session.add(cluster)
            session.flush()
            tags.create_tags_from_message(session, msg, ClusterVO.resource_type, cluster.uuid)
            return cluster.to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteCluster)
    async def delete(self, msg: DeleteCluster) -> None:
        def delete(session: Session) -> None:
            cluster = session.get(ClusterVO, msg.uuid)
            if cluster is None:
                raise not_found("ClusterVO", msg.uuid)
            hosts = session.scalar(
                select(func.count()).select_from(HostVO).where(HostVO.cluster_uuid == msg.uuid)
            )
            if hosts:
                raise operr(
                    f"cluster {cluster.name} still holds {hosts} host(s); delete them first"
                )
            session.delete(cluster)
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)
