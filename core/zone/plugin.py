"""Zones: the top of ZStack's zone -> cluster -> host tree."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.kernel.errors import not_found
from core.kernel.extensions import Plugin
from core.kernel.service import Service, handles
from core.tag.plugin import TagPlugin, delete_all_tags
from core.zone.api import ChangeZoneState, CreateZone, DeleteZone, QueryZone, UpdateZone
from core.zone.models import ZoneVO


class ZonePlugin(Plugin, Service):
    implements = (Service,)
    service_id = "zone"
    queries = (QueryZone,)

    @handles(CreateZone)
    async def create(self, msg: CreateZone) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            zone = ZoneVO(name=msg.name, description=msg.description)
            session.add(zone)
            session.flush()
            tags.create_tags_from_message(session, msg, ZoneVO.resource_type, zone.uuid)
            return zone.to_inventory()

        return await self.node.db.run(create)

    @handles(UpdateZone)
    async def update(self, msg: UpdateZone) -> dict[str, Any]:
        def update(session: Session) -> dict[str, Any]:
            zone = _zone(session, msg.uuid)
            if msg.name is not None:
                zone.name = msg.name
            if msg.description is not None:
                zone.description = msg.description
            session.flush()
            return zone.to_inventory()

        return await self.node.db.run(update)

    @handles(ChangeZoneState)
    async def change_state(self, msg: ChangeZoneState) -> dict[str, Any]:
        def change(session: Session) -> dict[str, Any]:
            zone = _zone(session, msg.uuid)
            zone.state = "Enabled" if msg.state_event == "enable" else "Disabled"
            session.flush()
            return zone.to_inventory()

        return await self.node.db.run(change)

    @handles(DeleteZone)
    async def delete(self, msg: DeleteZone) -> None:
        def delete(session: Session) -> None:
            session.delete(_zone(session, msg.uuid))
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)


def _zone(session: Session, uuid: str) -> ZoneVO:
    zone = session.get(ZoneVO, uuid)
    if zone is None:
        raise not_found("ZoneVO", uuid)
    return zone
