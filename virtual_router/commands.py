"""The protocol's commands (contracts.virtual_router) mapped onto the VirtualRouter.

Each handler parses and checks every field before anything is changed; a bad
one is answered as a failure naming the field and the value.
"""

from __future__ import annotations

from typing import Any

from agentkit.errors import ArgumentError
from agentkit.server import CommandContext, CommandRegistry, Handler
from contracts import virtual_router as p
from virtual_router.model import DhcpEntry, DhcpKey, DnsInfo, Fields, Snat
from virtual_router.router import VirtualRouter

Answer = dict[str, Any]


def _unique(values: list[str], what: str) -> None:
    """Refuse one request naming the same key twice (which would win is unclear)."""
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ArgumentError(f"{what} names {value} twice")
        seen.add(value)


class VrCommands:
    def __init__(self, router: VirtualRouter) -> None:
        self.router = router

    def registry(self) -> CommandRegistry:
        registry = CommandRegistry()
        handlers: dict[str, Handler] = {
            p.INIT: self.init,
            p.PING: self.ping,
            p.ADD_DHCP: self.add_dhcp,
            p.REMOVE_DHCP: self.remove_dhcp,
            p.SET_DNS: self.set_dns,
            p.REMOVE_DNS: self.remove_dns,
            p.SET_SNAT: self.set_snat,
            p.REMOVE_SNAT: self.remove_snat,
            p.SYNC_SNAT: self.sync_snat,
        }
        for path, handler in handlers.items():
            registry.add(path, handler)
        return registry

    async def init(self, body: Answer, _ctx: CommandContext) -> Answer:
        self.router.uuid = Fields(body).text("uuid")
        return {}

    async def ping(self, _body: Answer, _ctx: CommandContext) -> Answer:
        repaired = await self.router.repair()
        dnsmasq = self.router.dnsmasq.status().to_json()
        return {"uuid": self.router.uuid, "repaired": repaired, "dnsmasq": dnsmasq}

    async def add_dhcp(self, body: Answer, _ctx: CommandContext) -> Answer:
        f = Fields(body)
        rebuild = f.flag("rebuild", False)
        entries = [DhcpEntry.parse(e) for e in f.objects("dhcpEntryList")]
        _unique([e.mac for e in entries], "dhcpEntryList")
        _unique([str(e.ip) for e in entries], "dhcpEntryList")
        await self.router.add_dhcp(entries, rebuild)
        return {}

    async def remove_dhcp(self, body: Answer, _ctx: CommandContext) -> Answer:
        keys = [DhcpKey.parse(e) for e in Fields(body).objects("dhcpEntryList")]
        await self.router.remove_dhcp(keys)
        return {}

    async def set_dns(self, body: Answer, _ctx: CommandContext) -> Answer:
        await self.router.set_dns([DnsInfo.parse(d) for d in Fields(body).objects("dns")])
        return {}

    async def remove_dns(self, body: Answer, _ctx: CommandContext) -> Answer:
        await self.router.remove_dns([DnsInfo.parse(d) for d in Fields(body).objects("dns")])
        return {}

    async def set_snat(self, body: Answer, _ctx: CommandContext) -> Answer:
        await self.router.set_snats(self._snats(body))
        return {}

    async def remove_snat(self, body: Answer, _ctx: CommandContext) -> Answer:
        macs = [s.mac("privateNicMac") for s in Fields(body).objects("snats")]
        await self.router.remove_snats(macs)
        return {}

    async def sync_snat(self, body: Answer, _ctx: CommandContext) -> Answer:
        await self.router.sync_snats(self._snats(body))
        return {}

    @staticmethod
    def _snats(body: Answer) -> list[Snat]:
        snats = [Snat.parse(s) for s in Fields(body).objects("snats")]
        _unique([s.private_nic_mac for s in snats], "snats")
        return snats
