"""SNAT: a private network's traffic leaving by the public interface, set, removed and
replaced as a whole (``/syncsnat``) in the agent's nftables table."""

from __future__ import annotations

from typing import Any

from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts import virtual_router as vr
from contracts.base import Ack
from virtual_router.model import Fields, Snat, unique
from virtual_router.router import VirtualRouter


def snats(body: dict[str, Any]) -> list[Snat]:
    parsed = [Snat.parse(s) for s in Fields(body).objects("snats")]
    unique([s.private_nic_mac for s in parsed], "snats")
    return parsed


class SnatCommands(AgentPlugin[VirtualRouter]):
    def commands(self, registry: CommandRegistry) -> None:
        registry.add(vr.SET_SNAT, self.set_snat)
        registry.add(vr.REMOVE_SNAT, self.remove_snat)
        registry.add(vr.SYNC_SNAT, self.sync_snat)

    async def set_snat(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        await self.ctx.set_snats(snats(body))
        return Ack()

    async def remove_snat(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        macs = [s.mac("privateNicMac") for s in Fields(body).objects("snats")]
        await self.ctx.remove_snats(macs)
        return Ack()

    async def sync_snat(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        await self.ctx.sync_snats(snats(body))
        return Ack()
