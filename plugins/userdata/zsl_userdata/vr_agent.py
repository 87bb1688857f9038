"""The router agent's side: the metadata server and the entries it serves.

State (under ``plugin_state["userdata"]``) is the guest interface's MAC and the entries by
IP.  While there are entries, the appliance holds 169.254.169.254/32 on its guest
interface and the server listens there; with none, both go.  A repairer puts the address
and the server back when something removed them.  Simulated (``--simulate``): the state
alone, written to ``userdata.json`` in the agent's directory.
"""

from __future__ import annotations

import json
import logging
import socket
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Interface
from typing import Any

from pyroute2 import AsyncIPRoute

from agentkit.errors import AgentError
from agentkit.parse import parse_request as parse
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts.base import Ack
from virtual_router.extension_points import RouterContext
from zsl_userdata.contract import (
    APPLY,
    METADATA_IP,
    METADATA_PORT,
    RELEASE,
    SYNC,
    ApplyUserdataCmd,
    ReleaseUserdataCmd,
    SyncUserdataCmd,
    UserdataEntryTO,
)
from zsl_userdata.metadata import MetadataServer

log = logging.getLogger(__name__)
STATE_KEY = "userdata"
SIMULATED_STATE = "userdata.json"
ADDRESS = IPv4Interface(f"{METADATA_IP}/32")


@dataclass(frozen=True)
class UserdataState:
    guest_mac: str = ""
    entries: dict[str, UserdataEntryTO] = field(default_factory=dict)
    """By IP (text)."""


class MetadataCommands(AgentPlugin[RouterContext]):
    """``/userdata/{sync,apply,release}`` and the metadata server they feed."""

    order = 40

    def __init__(self, ctx: RouterContext) -> None:
        super().__init__(ctx)
        self.server = MetadataServer(self._lookup)

    @property
    def state(self) -> UserdataState:
        state = self.ctx.plugin_state.get(STATE_KEY)
        return state if isinstance(state, UserdataState) else UserdataState()

    def _lookup(self, ip: str) -> UserdataEntryTO | None:
        return self.state.entries.get(ip)

    async def start(self) -> None:
        self.ctx.plugin_state[STATE_KEY] = UserdataState()
        self.ctx.repairers.append(self)

    async def shutdown(self) -> None:
        await self.server.stop()

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(SYNC, self.sync)
        registry.add(APPLY, self.apply)
        registry.add(RELEASE, self.release)

    # -- commands ---------------------------------------------------------------------
    async def sync(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(SyncUserdataCmd, body)
        async with self.ctx.lock:
            entries = {str(e.ip): e for e in cmd.entries}
            await self._apply(UserdataState(cmd.guest_mac, entries))
        return Ack()

    async def apply(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(ApplyUserdataCmd, body)
        async with self.ctx.lock:
            entries = {**self.state.entries, **{str(e.ip): e for e in cmd.entries}}
            await self._apply(UserdataState(cmd.guest_mac, entries))
        return Ack()

    async def release(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(ReleaseUserdataCmd, body)
        async with self.ctx.lock:
            gone = {str(ip) for ip in cmd.ips}
            entries = {ip: e for ip, e in self.state.entries.items() if ip not in gone}
            await self._apply(replace(self.state, entries=entries))
        return Ack()

    # -- applying ---------------------------------------------------------------------
    async def _apply(self, state: UserdataState) -> None:
        """Serve ``state`` (kept only once it is served: a failure changes nothing)."""
        if self.ctx.simulated:
            served = {ip: e.to_json() for ip, e in sorted(state.entries.items())}
            text = json.dumps({"guestMac": state.guest_mac, "entries": served}, indent=1)
            (self.ctx.data_dir / SIMULATED_STATE).write_text(text)
            self.ctx.plugin_state[STATE_KEY] = state
            return
        if state.entries:
            await self._serve(state.guest_mac)
        else:
            await self._stop_serving(state.guest_mac or self.state.guest_mac)
        self.ctx.plugin_state[STATE_KEY] = state

    async def _guest_index(self, guest_mac: str) -> tuple[int, bool]:
        """The guest interface's index, and whether it holds the metadata address."""
        table = await self.ctx.interfaces.snapshot()
        iface = table.find(guest_mac, "guestMac")
        try:
            index = socket.if_nametoindex(iface.name)
        except OSError as exc:
            raise AgentError(f"interface {iface.name} is gone: {exc}") from None
        return index, ADDRESS in iface.addresses

    async def _serve(self, guest_mac: str) -> bool:
        """The address on the guest interface and the server on it; whether either had to
        be (re)made."""
        index, held = await self._guest_index(guest_mac)
        if not held:
            try:
                async with AsyncIPRoute() as ipr:
                    await ipr.addr("add", index=index, address=METADATA_IP, prefixlen=32)
            except Exception as exc:
                raise AgentError(f"cannot add {ADDRESS} to the guest interface: {exc}") from exc
            await self.server.stop()  # a socket bound before the address went: bind again
        if self.server.running:
            return not held
        try:
            await self.server.start(METADATA_IP, METADATA_PORT)
        except OSError as exc:
            where = f"{METADATA_IP}:{METADATA_PORT}"
            raise AgentError(f"cannot serve metadata on {where}: {exc}") from exc
        return True

    async def _stop_serving(self, guest_mac: str) -> None:
        await self.server.stop()
        if not guest_mac:
            return
        index, held = await self._guest_index(guest_mac)
        if held:
            try:
                async with AsyncIPRoute() as ipr:
                    await ipr.addr("del", index=index, address=METADATA_IP, prefixlen=32)
            except Exception as exc:
                raise AgentError(f"cannot remove {ADDRESS}: {exc}") from exc

    # -- Repairer ---------------------------------------------------------------------
    async def repair(self) -> list[str]:
        state = self.state
        if self.ctx.simulated or not state.entries:
            return []
        if await self._serve(state.guest_mac):
            log.warning("the metadata address or server was gone; restored")
            return [f"metadata service on {METADATA_IP}:{METADATA_PORT} restored"]
        return []
