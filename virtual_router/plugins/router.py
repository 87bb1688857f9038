"""The agent itself: ``/init`` sets its signature, ``/ping`` answers it and repairs what
the watchdog would (a dead dnsmasq)."""

from __future__ import annotations

from typing import Any

from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import virtual_router as vr
from contracts.base import Ack
from virtual_router.model import Fields
from virtual_router.router import VirtualRouter


class RouterCommands(AgentPlugin[VirtualRouter]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add(vr.INIT, self.init)
        registry.add(vr.PING, self.ping)

    async def init(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        self.ctx.uuid = Fields(body).text("uuid")
        return Ack()

    async def ping(self, _body: dict[str, Any], _ctx: CommandContext) -> vr.PingRsp:
        repaired = await self.ctx.repair()
        dnsmasq = self.ctx.dnsmasq.status().to_contract()
        return vr.PingRsp(uuid=self.ctx.uuid, repaired=repaired, dnsmasq=dnsmasq)
