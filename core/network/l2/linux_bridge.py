"""The LinuxBridge vSwitch type: a Linux bridge per network on each host, optionally
enslaving a host interface, made and removed through the host agent."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from contracts.names import bridge_name
from core.kernel.db import new_uuid
from core.kernel.errors import argerr
from core.kernel.extensions import Plugin
from core.kernel.rest import AgentClient
from core.kvm.extension_points import KVMCompleteNicInformationExtensionPoint, NicKey
from core.network.l2.extension_points import (
    L2NetworkRealizationExtensionPoint,
    RealizationKey,
    VSwitchFactory,
)
from core.network.l2.models import LINUX_BRIDGE, L2NetworkVO
from core.network.l2.no_vlan import L2_NO_VLAN


class LinuxBridgePlugin(Plugin):
    implements = (
        VSwitchFactory,
        L2NetworkRealizationExtensionPoint,
        KVMCompleteNicInformationExtensionPoint,
    )
    v_switch_type = LINUX_BRIDGE
    realization_keys = (
        RealizationKey(L2_NO_VLAN, LINUX_BRIDGE, "KVM"),
        RealizationKey(L2_NO_VLAN, LINUX_BRIDGE, "Simulator"),
    )
    nic_keys = (NicKey(L2_NO_VLAN, LINUX_BRIDGE),)

    def switch_name(self, session: Session, l2: L2NetworkVO, vlan: int | None) -> str:
        """``zslbr-`` and 9 hex digits of the network's uuid (a new uuid in the rare
        clash); an interface may be in one bridge only."""
        if l2.physical_interface:
            other = session.scalars(  # of any vSwitch type: a link has one master
                select(L2NetworkVO).where(
                    L2NetworkVO.zone_uuid == l2.zone_uuid,
                    L2NetworkVO.physical_interface == l2.physical_interface,
                )
            ).first()
            if other is not None:
                raise argerr(
                    f"interface {l2.physical_interface} already belongs to the bridge of "
                    f"L2 network {other.name}; an interface can be in one bridge only"
                )
        taken = set(session.scalars(select(L2NetworkVO.bridge_name)))
        while bridge_name(l2.uuid) in taken:  # 36 bits of the uuid: a clash is rare
            l2.uuid = new_uuid()
        return bridge_name(l2.uuid)

    async def realize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None:
        await agent.send(
            kvm.CreateBridgeCmd(
                bridge_name=l2["bridgeName"],
                physical_interface=l2["physicalInterface"],
                allow_default_route_interface=l2["allowDefaultRouteInterface"],
            )
        )

    async def unrealize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None:
        await agent.send(kvm.DeleteBridgeCmd(bridge_name=l2["bridgeName"]))

    def complete_nic_information(self, l2: dict[str, Any], nic: kvm.NicTO) -> kvm.NicTO:
        """A port of the network's Linux bridge: what ``nic`` says already."""
        return nic
