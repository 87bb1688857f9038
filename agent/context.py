"""What the host agent shares with its plugins (agentkit.plugins)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agent.backend import Backend
from agent.extension_points import PortPlugger
from agent.reports import Reporter


@dataclass
class HostAgentContext:
    backend: Backend
    """The hypervisor and host networking: libvirt's or the simulator's."""
    reporter: Reporter
    """Reports to the core (VM states, progress); configured by the host connect."""
    host_network_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """Bridges, host NAT and the lab's removals share one host-wide state (links, one
    nftables table): every plugin changing it holds this one lock."""

    @property
    def port_pluggers(self) -> dict[str, PortPlugger]:
        """Virtual port type -> the :class:`~agent.extension_points.PortPlugger` that plugs
        an appliance's veths into bridges of that type (e.g. ``openvswitch``).  Empty
        at first: an agent plugin serving a type registers its plugger here in its
        ``start()`` (before the agent serves), ``self.ctx.port_pluggers[type] = plugger``.
        It is the backend's network driver's own dict
        (:attr:`agent.network.base.NetworkDriver.port_pluggers`), so the appliance code
        sees every plugger registered; an appliance NIC of a type nobody registered is
        refused."""
        return self.backend.network.port_pluggers
