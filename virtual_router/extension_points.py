"""What the router agent offers its plugins beyond commands: the context they are made
with, and a way to keep their own state true (published: plugins may import this,
``virtual_router.interfaces`` and ``virtual_router.model``).

A plugin (``zstack_lite.vr_agent_plugins``) gets the agent's :class:`RouterContext`.  It
serialises its changes with the context's ``lock`` (the same lock the agent's own commands
and its watchdog take), finds interfaces by MAC through ``interfaces``, keeps what it has
applied in ``plugin_state[<its name>]`` and registers a :class:`Repairer`, which the
watchdog runs every few seconds (under the lock) so a deleted table or address comes back.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from virtual_router.interfaces import Interfaces


@runtime_checkable
class Repairer(Protocol):
    """Puts what a plugin applied back if it is gone or changed."""

    async def repair(self) -> list[str]:
        """What was repaired ([] when all was in place); raises AgentError when it could
        not.  Called with the context's lock held."""
        ...


class RouterContext(Protocol):
    """The router agent as its plugins see it."""

    lock: asyncio.Lock
    """Held by every command that changes the appliance, and by the watchdog."""
    interfaces: Interfaces
    """The appliance's interfaces (``snapshot()`` finds them by MAC)."""
    simulated: bool
    """True under ``--simulate``: keep state, touch nothing in the kernel."""
    data_dir: Path
    """The agent's own directory (a simulated plugin writes what it would apply here)."""
    plugin_state: dict[str, Any]
    """Each plugin's own state, under its name."""
    repairers: list[Repairer]
    """Run by the watchdog after the agent's own repairs."""

    def ensure_forwarding(self) -> None:
        """Turn IPv4 forwarding on in the appliance (what NAT needs); idempotent."""
        ...
