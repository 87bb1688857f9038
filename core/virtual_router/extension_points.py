"""What plugins that bring services to the virtual router may use of it (published).

A plugin adding service types to the ``VirtualRouter`` provider (port forwarding, EIP, user
data…) finds the router of a guest network, its NICs and its agent here, serialises its
changes with the router's own lock, and inserts its flows into the post-create chain
(after :data:`SYNC_SNAT_FLOW`), which runs over :class:`RouterData` whenever a router is
made or reconnected, so everything is replayed to a new or restarted agent.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Any, Final, Protocol, runtime_checkable

from sqlalchemy.orm import Session

from core.kernel.rest import AgentClient
from core.virtual_router.api import VIRTUAL_ROUTER
from core.virtual_router.flows import (
    POST_CREATE_CHAIN,
    RouterData,
    VirtualRouterSyncSNATOnStartFlow,
)
from core.virtual_router.sync import GUEST, PUBLIC

__all__ = [
    "GUEST",
    "POST_CREATE_CHAIN",
    "PUBLIC",
    "SYNC_SNAT_FLOW",
    "VIRTUAL_ROUTER",
    "RouterData",
    "VirtualRouterAccess",
]

SYNC_SNAT_FLOW: Final = (
    f"{VirtualRouterSyncSNATOnStartFlow.__module__}.{VirtualRouterSyncSNATOnStartFlow.__name__}"
)
"""The last of the router's own post-create flows: plugins insert theirs after it."""


@runtime_checkable
class VirtualRouterAccess(Protocol):
    """The virtual router as plugins see it (``registry.extensions(VirtualRouterAccess)``)."""

    def appliance_of(self, session: Session, guest_l3_uuid: str) -> dict[str, Any] | None:
        """The inventory of the router serving a guest network, or None (none made yet)."""
        ...

    def router_nics(self, session: Session, appliance_uuid: str) -> dict[str, dict[str, Any]]:
        """A router's NICs by role (``PUBLIC``, ``GUEST``), each a NIC inventory."""
        ...

    def public_network_of(self, session: Session, guest_l3_uuid: str) -> str | None:
        """The public L3 network a router of this guest network has (or would have) an
        address on: its router's, else its zone's offering's; None without either."""
        ...

    def locked(self, guest_l3_uuid: str) -> AbstractAsyncContextManager[None]:
        """The lock every change to the router of a guest network holds."""
        ...

    def client(self, appliance: dict[str, Any]) -> AgentClient:
        """The client of a router's agent."""
        ...
