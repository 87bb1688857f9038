"""DNS: the upstream servers dnsmasq forwards to, and the guest interfaces it serves."""

from __future__ import annotations

from typing import Any

from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import virtual_router as vr
from contracts.base import Ack
from virtual_router.model import DnsInfo, Fields
from virtual_router.router import VirtualRouter


class DnsCommands(AgentPlugin[VirtualRouter]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add(vr.SET_DNS, self.set_dns)
        registry.add(vr.REMOVE_DNS, self.remove_dns)

    async def set_dns(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        await self.ctx.set_dns([DnsInfo.parse(d) for d in Fields(body).objects("dns")])
        return Ack()

    async def remove_dns(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        await self.ctx.remove_dns([DnsInfo.parse(d) for d in Fields(body).objects("dns")])
        return Ack()
