"""What plugins may call in the host service: the client of a host's agent.

The function lives where the host service keeps its clients; this module is the published
name (``tests/test_layout.py`` lets plugins import ``*.spi``, not the service's modules)."""

from __future__ import annotations

from typing import Any

from core.kernel.rest import AgentClient

__all__ = ["agent_of"]


async def agent_of(node: Any, host_uuid: str) -> AgentClient:
    """The client of the agent of host ``host_uuid`` (``node``: the running management
    node); it fails naming the host when the host does not exist."""
    from core.host.plugin import HostPlugin

    client: AgentClient = await node.plugin(HostPlugin).agent_of(host_uuid)
    return client
