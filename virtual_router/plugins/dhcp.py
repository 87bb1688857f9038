"""DHCP: static leases, added, replaced (``rebuild``) and removed by MAC."""

from __future__ import annotations

from typing import Any

from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import virtual_router as vr
from contracts.base import Ack
from virtual_router.model import DhcpEntry, DhcpKey, Fields, unique
from virtual_router.router import VirtualRouter


class DhcpCommands(AgentPlugin[VirtualRouter]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add(vr.ADD_DHCP, self.add_dhcp)
        registry.add(vr.REMOVE_DHCP, self.remove_dhcp)

    async def add_dhcp(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        f = Fields(body)
        rebuild = f.flag("rebuild", False)
        entries = [DhcpEntry.parse(e) for e in f.objects("dhcpEntryList")]
        unique([e.mac for e in entries], "dhcpEntryList")
        unique([str(e.ip) for e in entries], "dhcpEntryList")
        await self.ctx.add_dhcp(entries, rebuild)
        return Ack()

    async def remove_dhcp(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        keys = [DhcpKey.parse(e) for e in Fields(body).objects("dhcpEntryList")]
        await self.ctx.remove_dhcp(keys)
        return Ack()
