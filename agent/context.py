"""What the host agent shares with its plugins (agentkit.plugins)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from agent.backend import Backend
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
