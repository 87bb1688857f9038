"""How L2 network types plug in (the seed's L2NetworkFactory and its realisation)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from core.network.l2.models import L2NetworkVO


@runtime_checkable
class L2NetworkFactory(Protocol):
    """One L2 network type: validates and fills a new network's row.

    ``type`` is the value of ``L2NetworkVO.type``; the L2 service keeps one factory
    per type (a second plugin declaring the same type is an error at start).
    """

    type: str

    def create(self, session: Session, l2: L2NetworkVO, msg: Any) -> None:
        """Check ``msg`` against the other networks and complete ``l2`` (not yet added)."""


@runtime_checkable
class L2NetworkRealizationExtensionPoint(Protocol):
    """Makes an L2 network of one type exist on a host (e.g. the bridge, through the
    host's agent) and takes it away again.  Both must be idempotent."""

    l2_network_type: str

    async def realize(self, l2: dict[str, Any], host_uuid: str) -> None: ...

    async def unrealize(self, l2: dict[str, Any], host_uuid: str) -> None: ...
