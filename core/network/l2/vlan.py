"""L2VlanNetwork (ZStack keeps it in the core): a network whose frames carry a VLAN tag on
a switch that other networks share.  Which vSwitch types can tag is up to them: this
host's Linux bridges cannot (no 8021q module), Open vSwitch can."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.errors import argerr
from core.kernel.extensions import Plugin
from core.network.l2.extension_points import L2NetworkFactory
from core.network.l2.models import L2NetworkVO, L2VlanNetworkVO

L2_VLAN = "L2VlanNetwork"


class L2VlanNetworkPlugin(Plugin):
    implements = (L2NetworkFactory,)
    type = L2_VLAN

    def create(self, session: Session, l2: L2NetworkVO, msg: Any) -> None:
        """One VLAN per (zone, interface, vSwitch type): the same tag twice on one switch
        would join the two networks."""
        other = session.scalars(
            select(L2NetworkVO)
            .join(L2VlanNetworkVO, L2VlanNetworkVO.uuid == L2NetworkVO.uuid)
            .where(
                L2NetworkVO.zone_uuid == l2.zone_uuid,
                L2NetworkVO.physical_interface == l2.physical_interface,
                L2NetworkVO.v_switch_type == l2.v_switch_type,
                L2VlanNetworkVO.vlan == msg.vlan,
            )
        ).first()
        if other is not None:
            where = (
                f"interface {l2.physical_interface}" if l2.physical_interface else "no interface"
            )
            raise argerr(
                f"VLAN {msg.vlan} on {where} ({l2.v_switch_type}) is L2 network "
                f"{other.name}'s already"
            )
        session.add(L2VlanNetworkVO(uuid=l2.uuid, vlan=msg.vlan))
