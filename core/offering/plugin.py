"""Instance and disk offerings: the sizes VMs and data volumes are created with."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.kernel.errors import not_found
from core.kernel.extensions import Plugin
from core.kernel.service import Service, handles
from core.offering.api import (
    CreateDiskOffering,
    CreateInstanceOffering,
    DeleteDiskOffering,
    DeleteInstanceOffering,
    QueryDiskOffering,
    QueryInstanceOffering,
)
from core.offering.models import DiskOfferingVO, InstanceOfferingVO
from core.tag.plugin import TagPlugin, delete_all_tags


class OfferingPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "instanceOffering"
    queries = (QueryInstanceOffering, QueryDiskOffering)

    @handles(CreateInstanceOffering)
    async def create(self, msg: CreateInstanceOffering) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            offering = InstanceOfferingVO(
                name=msg.name,
                description=msg.description,
                cpu_num=msg.cpu_num,
                memory_size=msg.memory_size,
            )
            session.add(offering)
            session.flush()
            tags.create_tags_from_message(
                session, msg, InstanceOfferingVO.resource_type, offering.uuid
            )
            return offering.to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteInstanceOffering)
    async def delete(self, msg: DeleteInstanceOffering) -> None:
        def delete(session: Session) -> None:
            offering = session.get(InstanceOfferingVO, msg.uuid)
            if offering is None:
                raise not_found("InstanceOfferingVO", msg.uuid)
            session.delete(offering)
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)

    @handles(CreateDiskOffering)
    async def create_disk_offering(self, msg: CreateDiskOffering) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            offering = DiskOfferingVO(
                name=msg.name, description=msg.description, disk_size=msg.disk_size
            )
            session.add(offering)
            session.flush()
            tags.create_tags_from_message(session, msg, DiskOfferingVO.resource_type, offering.uuid)
            return offering.to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteDiskOffering)
    async def delete_disk_offering(self, msg: DeleteDiskOffering) -> None:
        def delete(session: Session) -> None:
            offering = session.get(DiskOfferingVO, msg.uuid)
            if offering is None:
                raise not_found("DiskOfferingVO", msg.uuid)
            session.delete(offering)
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)
