"""L2NoVlanNetwork: a Linux bridge on each host, optionally enslaving a host interface."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from contracts.names import bridge_name
from core.host.plugin import HostPlugin
from core.kernel.db import new_uuid
from core.kernel.errors import argerr
from core.kernel.extensions import Plugin
from core.network.l2.extension_points import L2NetworkFactory, L2NetworkRealizationExtensionPoint
from core.network.l2.models import L2NetworkVO

L2_NO_VLAN = "L2NoVlanNetwork"


class L2NoVlanNetworkPlugin(Plugin):
    implements = (L2NetworkFactory, L2NetworkRealizationExtensionPoint)
    type = L2_NO_VLAN
    l2_network_type = L2_NO_VLAN

    def create(self, session: Session, l2: L2NetworkVO, msg: Any) -> None:
        if msg.physical_interface:
            other = session.scalars(
                select(L2NetworkVO).where(
                    L2NetworkVO.zone_uuid == l2.zone_uuid,
                    L2NetworkVO.physical_interface == msg.physical_interface,
                )
            ).first()
            if other is not None:
                raise argerr(
                    f"interface {msg.physical_interface} already belongs to the bridge of "
                    f"L2 network {other.name}; an interface can be in one bridge only"
                )
        taken = set(session.scalars(select(L2NetworkVO.bridge_name)))
        l2.uuid = new_uuid()
        while bridge_name(l2.uuid) in taken:  # 36 bits of the uuid: a clash is rare
            l2.uuid = new_uuid()
        l2.bridge_name = bridge_name(l2.uuid)
        l2.allow_default_route_interface = msg.allow_default_route_interface

    async def realize(self, l2: dict[str, Any], host_uuid: str) -> None:
        agent = await self.node.plugin(HostPlugin).agent_of(host_uuid)
        await agent.send(
            kvm.CreateBridgeCmd(
                bridge_name=l2["bridgeName"],
                physical_interface=l2["physicalInterface"],
                allow_default_route_interface=l2["allowDefaultRouteInterface"],
            )
        )

    async def unrealize(self, l2: dict[str, Any], host_uuid: str) -> None:
        agent = await self.node.plugin(HostPlugin).agent_of(host_uuid)
        await agent.send(kvm.DeleteBridgeCmd(bridge_name=l2["bridgeName"]))
