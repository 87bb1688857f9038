"""The appliance agent put together: token, drivers (real or simulated), the plugins'
commands (entry-point group ``zstack_lite.vr_agent_plugins``), watchdog and the HTTP
server on a Unix socket."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agentkit.auth import load_or_create_token
from agentkit.plugins import AgentPlugin, discover, serve
from agentkit.server import AgentServer
from virtual_router.dnsmasq import Dnsmasq, SimulatedDnsmasq
from virtual_router.interfaces import NetlinkInterfaces, SimulatedInterfaces
from virtual_router.router import WATCHDOG_INTERVAL, VirtualRouter
from virtual_router.snat import NftSnat, SimulatedSnat

log = logging.getLogger(__name__)

PLUGIN_GROUP = "zstack_lite.vr_agent_plugins"


async def _no_callbacks(url: str, task_uuid: str, _answer: dict[str, Any]) -> bool:
    """Every command is synchronous, so there is never a callback to send."""
    log.error("no async commands here; dropping the callback of %s to %s", task_uuid, url)
    return False


def make_router(data_dir: Path, simulate: bool) -> VirtualRouter:
    if simulate:
        return VirtualRouter(
            SimulatedInterfaces(),
            SimulatedDnsmasq(data_dir),
            SimulatedSnat(),
            simulated=True,
            data_dir=data_dir,
        )
    return VirtualRouter(NetlinkInterfaces(), Dnsmasq(data_dir), NftSnat(), data_dir=data_dir)


class VrAgent:
    def __init__(
        self,
        data_dir: Path,
        token_file: Path,
        *,
        simulate: bool = False,
        router: VirtualRouter | None = None,
        watchdog_interval: float = WATCHDOG_INTERVAL,
        plugins: Sequence[type[AgentPlugin[VirtualRouter]]] | None = None,
    ) -> None:
        """``plugins``: the plugin classes, default: the installed ones."""
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.token = load_or_create_token(Path(token_file))
        self.router = router or make_router(self.data_dir, simulate)
        self.watchdog_interval = watchdog_interval
        self.plugin_classes = plugins if plugins is not None else discover(PLUGIN_GROUP)
        self.server: AgentServer | None = None

    async def start(self, socket_path: str) -> None:
        await self.router.dnsmasq.kill_stale()
        try:
            _, self.server = await serve(
                self.plugin_classes, self.router, self.token, _no_callbacks
            )
            await self.server.start_unix(socket_path)
        except BaseException:
            await self.stop()
            raise
        self.router.start_watchdog(self.watchdog_interval)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
        await self.router.close()
        log.info("virtual-router agent stopped")
