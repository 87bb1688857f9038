"""The client of one virtual router's agent: HTTP over the Unix socket its host agent
made, with the bearer token from the file beside it (the node runs on that host)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.kernel.errors import operr
from core.kernel.rest import AgentClient

if TYPE_CHECKING:
    from core.kernel.node import ManagementNode


def open_client(node: ManagementNode, appliance: dict[str, Any]) -> AgentClient:
    socket, token_file = appliance["agentSocketPath"], appliance["agentTokenFile"]
    if not socket or not token_file:
        raise operr(f"virtual router {appliance['name']} has no agent yet")
    try:
        token = Path(token_file).read_text().strip()
    except OSError as exc:
        raise operr(
            f"cannot read the token of virtual router {appliance['name']}'s agent",
            f"{token_file}: {exc.strerror}",
        ) from None
    return AgentClient(
        "http://virtual-router",
        token,
        node.rest,
        f"virtual router {appliance['name']}",
        unix_socket=socket,
    )
