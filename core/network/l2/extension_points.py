"""How L2 networks plug in, as ZStack's L2 manager does it: the kind of network
(``L2NetworkFactory``, by L2 type) and the kind of switch (``VSwitchFactory``, by vSwitch
type) are independent, and making a network exist on a host
(``L2NetworkRealizationExtensionPoint``) is keyed by the three of L2 type, vSwitch type
and hypervisor type.  A plugin adding a vSwitch type (Open vSwitch) implements the last
two and touches no core file.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from core.kernel.rest import AgentClient
from core.network.l2.models import L2NetworkVO


@runtime_checkable
class L2NetworkFactory(Protocol):
    """One L2 network type: checks a create message and completes the new network's row.

    ``type`` is the value of ``L2NetworkVO.type``; the L2 service keeps one factory per
    type (a second plugin declaring the same type is an error at start).
    """

    type: str

    def create(self, session: Session, l2: L2NetworkVO, msg: Any) -> None:
        """Check ``msg`` against the other networks and complete ``l2`` (its uuid set, not
        yet added); rows of the type's own (e.g. the VLAN) may be added to ``session``."""


@runtime_checkable
class VSwitchFactory(Protocol):
    """One vSwitch type (ZStack's ``VSwitchType``): the switch a network's NICs are ports
    of on every host."""

    v_switch_type: str

    def switch_name(self, session: Session, l2: L2NetworkVO, vlan: int | None) -> str:
        """Check that ``l2`` (complete but for its switch) can have a switch of this type
        and name it (``L2NetworkVO.bridge_name``); several networks may share one."""


class RealizationKey(NamedTuple):
    l2_network_type: str
    v_switch_type: str
    hypervisor_type: str


@runtime_checkable
class L2NetworkRealizationExtensionPoint(Protocol):
    """Makes L2 networks exist on hosts (the switch, through the host's agent) and takes
    them away again; both idempotent.  ``realization_keys`` are the (L2 type, vSwitch type,
    hypervisor type) it realises; the L2 service picks the one for a network and a host."""

    realization_keys: tuple[RealizationKey, ...]

    async def realize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None: ...

    async def unrealize(self, l2: dict[str, Any], host_uuid: str, agent: AgentClient) -> None: ...
