"""The router agent's side: VIPs, port forwarding and EIPs in the appliance.

State (under ``plugin_state["vip"]``) is the VIPs, rules and EIPs last applied; every
command computes the new state, applies it (one nft transaction, then the addresses) and
only then keeps it, so a refused command changes nothing.  A repairer puts the table and
the addresses back when something removed them.
"""

from __future__ import annotations

import logging
import socket
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Any

from agentkit import nft
from agentkit.errors import AgentError, ArgumentError
from agentkit.parse import parse_request as parse
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts.base import Ack
from virtual_router.extension_points import RouterContext
from virtual_router.interfaces import InterfaceTable
from zsl_vip import addresses
from zsl_vip.contract import (
    EIP_APPLY,
    EIP_REVOKE,
    EIP_SYNC,
    NFT_TABLE,
    PF_APPLY,
    PF_REVOKE,
    PF_SYNC,
    VIP_SYNC,
    ApplyEipCmd,
    ApplyPortForwardingCmd,
    EipTO,
    PortForwardingRuleTO,
    RevokeEipCmd,
    RevokePortForwardingCmd,
    SyncEipCmd,
    SyncPortForwardingCmd,
    SyncVipCmd,
    VipTO,
)
from zsl_vip.nat import EipRule, render_ruleset

log = logging.getLogger(__name__)
STATE_KEY = "vip"
SIMULATED_RULESET = "vip-nat.nft"
"""Under ``--simulate``: the ruleset that would be applied, in the agent's directory."""


@dataclass(frozen=True)
class VipState:
    public_mac: str = ""
    vips: tuple[VipTO, ...] = ()
    rules: dict[str, PortForwardingRuleTO] = field(default_factory=dict)
    eips: dict[str, EipTO] = field(default_factory=dict)
    listing: str = ""
    """``nft list table`` right after the last apply ("" when there is no table)."""
    ruleset: str = ""
    """What was applied, as sent (what the simulator keeps)."""

    @property
    def empty(self) -> bool:
        return not (self.vips or self.rules or self.eips)


class VipNatCommands(AgentPlugin[RouterContext]):
    """``/vip/sync``, ``/portforwarding/{sync,apply,revoke}``, ``/eip/{sync,apply,revoke}``."""

    order = 50

    @property
    def state(self) -> VipState:
        state = self.ctx.plugin_state.get(STATE_KEY)
        return state if isinstance(state, VipState) else VipState()

    async def start(self) -> None:
        self.ctx.plugin_state[STATE_KEY] = VipState()
        self.ctx.repairers.append(self)

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(VIP_SYNC, self.sync_vips)
        registry.add(PF_SYNC, self.sync_rules)
        registry.add(PF_APPLY, self.apply_rules)
        registry.add(PF_REVOKE, self.revoke_rules)
        registry.add(EIP_SYNC, self.sync_eips)
        registry.add(EIP_APPLY, self.apply_eips)
        registry.add(EIP_REVOKE, self.revoke_eips)

    # -- commands ---------------------------------------------------------------------
    async def sync_vips(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(SyncVipCmd, body)
        async with self.ctx.lock:
            await self._apply(replace(self.state, public_mac=cmd.public_mac, vips=tuple(cmd.vips)))
        return Ack()

    async def sync_rules(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(SyncPortForwardingCmd, body)
        async with self.ctx.lock:
            await self._apply(replace(self.state, rules={r.uuid: r for r in cmd.rules}))
        return Ack()

    async def apply_rules(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(ApplyPortForwardingCmd, body)
        async with self.ctx.lock:
            rules = {**self.state.rules, **{r.uuid: r for r in cmd.rules}}
            await self._apply(replace(self.state, rules=rules))
        return Ack()

    async def revoke_rules(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(RevokePortForwardingCmd, body)
        async with self.ctx.lock:
            gone = set(cmd.uuids)
            rules = {u: r for u, r in self.state.rules.items() if u not in gone}
            await self._apply(replace(self.state, rules=rules))
        return Ack()

    async def sync_eips(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(SyncEipCmd, body)
        async with self.ctx.lock:
            await self._apply(replace(self.state, eips={e.uuid: e for e in cmd.eips}))
        return Ack()

    async def apply_eips(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(ApplyEipCmd, body)
        async with self.ctx.lock:
            eips = {**self.state.eips, **{e.uuid: e for e in cmd.eips}}
            await self._apply(replace(self.state, eips=eips))
        return Ack()

    async def revoke_eips(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse(RevokeEipCmd, body)
        async with self.ctx.lock:
            gone = set(cmd.uuids)
            eips = {u: e for u, e in self.state.eips.items() if u not in gone}
            await self._apply(replace(self.state, eips=eips))
        return Ack()

    # -- applying ---------------------------------------------------------------------
    def _check(self, state: VipState) -> None:
        """Refuse a state the kernel would take in part: two EIPs or rules on one target."""
        owners: dict[tuple[str, str, int], str] = {}
        for r in state.rules.values():
            for port in range(r.vip_port_start, r.vip_port_end + 1):
                key = (str(r.vip_ip), r.protocol_type, port)
                if key in owners:
                    raise ArgumentError(
                        f"rule {r.uuid} forwards {r.protocol_type} {r.vip_ip}:{port}, which "
                        f"rule {owners[key]} forwards already"
                    )
                owners[key] = r.uuid
        eip_ips = {str(e.vip_ip): e.uuid for e in state.eips.values()}
        for r in state.rules.values():
            if str(r.vip_ip) in eip_ips:
                raise ArgumentError(
                    f"rule {r.uuid} uses {r.vip_ip}, the address of EIP {eip_ips[str(r.vip_ip)]}"
                )
        guests = [str(e.guest_ip) for e in state.eips.values()]
        if len(set(guests)) != len(guests):
            raise ArgumentError("two EIPs name the same guest address")
        if (state.rules or state.eips) and not state.public_mac and not self.ctx.simulated:
            raise ArgumentError("no public interface yet: send /vip/sync first")

    def _eip_rules(self, state: VipState, table: InterfaceTable) -> list[EipRule]:
        return [
            EipRule(e, table.find(e.public_mac, f"eips[{e.uuid}].publicMac").name)
            for e in state.eips.values()
        ]

    async def _apply(self, state: VipState) -> None:
        self._check(state)
        table = await self.ctx.interfaces.snapshot()
        vip_ips = {v.ip for v in state.vips}
        ruleset = render_ruleset(vip_ips, state.rules.values(), self._eip_rules(state, table))
        if self.ctx.simulated:
            (self.ctx.data_dir / SIMULATED_RULESET).write_text(ruleset)
            self.ctx.plugin_state[STATE_KEY] = replace(state, ruleset=ruleset)
            return
        public = table.find(state.public_mac, "publicMac") if state.public_mac else None
        await nft.apply_ruleset(ruleset, NFT_TABLE)
        added: set[IPv4Address] = set()
        if public is not None:
            try:
                added = await addresses.set_vips(_index(public.name), vip_ips)
            except AgentError:
                await nft.apply_ruleset(self.state.ruleset or render_ruleset((), (), ()), NFT_TABLE)
                raise
        listing = "" if state.empty else await nft.list_table("ip", NFT_TABLE)
        self.ctx.plugin_state[STATE_KEY] = replace(state, listing=listing, ruleset=ruleset)
        if not state.empty:
            self.ctx.ensure_forwarding()
        if public is not None and added:
            try:
                addresses.announce(public.name, state.public_mac, added)
            except OSError as exc:  # neighbours learn by ARP anyway; not worth failing
                log.warning("gratuitous ARP for %s failed: %s", sorted(map(str, added)), exc)

    # -- Repairer ---------------------------------------------------------------------
    async def repair(self) -> list[str]:
        state = self.state
        if state.empty or self.ctx.simulated:
            return []
        repaired = []
        if await nft.list_table("ip", NFT_TABLE) != state.listing:
            log.warning("nft table %s is missing or changed; restoring it", NFT_TABLE)
            await self._apply(state)
            repaired.append(f"nft table {NFT_TABLE} restored")
        if state.public_mac:
            table = await self.ctx.interfaces.snapshot()
            index = _index(table.find(state.public_mac, "publicMac").name)
            wanted = {v.ip for v in state.vips}
            if await addresses.held_vips(index) != wanted:
                await addresses.set_vips(index, wanted)
                repaired.append("VIP addresses restored")
        self.ctx.ensure_forwarding()
        return repaired


def _index(interface: str) -> int:
    try:
        return socket.if_nametoindex(interface)
    except OSError as exc:
        raise AgentError(f"interface {interface} is gone: {exc}") from None
