"""L2NoVlanNetwork: a network without a VLAN tag, on a switch of its own or (with a
vSwitch type that shares switches) an untagged port of one."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.kernel.extensions import Plugin
from core.network.l2.extension_points import L2NetworkFactory
from core.network.l2.models import L2NetworkVO

L2_NO_VLAN = "L2NoVlanNetwork"


class L2NoVlanNetworkPlugin(Plugin):
    implements = (L2NetworkFactory,)
    type = L2_NO_VLAN

    def create(self, session: Session, l2: L2NetworkVO, msg: Any) -> None:
        """Nothing of its own: the vSwitch type checks where the switch may go."""
