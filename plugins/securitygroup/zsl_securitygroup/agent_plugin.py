"""The host agent's side: one command replaces the lab's security-group tables with the
state the core sends (:mod:`zsl_securitygroup.render`), in one nft transaction under the
host network lock; the simulator keeps the rendered text instead."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

from agent.context import HostAgentContext
from agentkit import nft
from agentkit.errors import AgentError
from agentkit.parse import parse_request
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry
from contracts.base import Ack
from zsl_securitygroup import contract
from zsl_securitygroup.render import lab_tables, render

BRIDGE_NF: Final = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
"""1 when bridged IPv4 packets pass the inet hooks (br_netfilter), where the established
mark is set: without it, no reply to a guest's connection would be admitted."""


def check_bridge_netfilter(path: Path = BRIDGE_NF) -> None:
    try:
        value = path.read_text().strip()
    except OSError:
        value = "absent"
    if value != "1":
        raise AgentError(
            f"security groups need br_netfilter with {path} = 1 (it is {value}): "
            "load br_netfilter and set net.bridge.bridge-nf-call-iptables=1"
        )


_EGRESS_CHAIN = re.compile(r"chain o_(zsl[a-z0-9]+) \{")


class SecurityGroupCommands(AgentPlugin[HostAgentContext]):
    def __init__(self, ctx: HostAgentContext) -> None:
        super().__init__(ctx)
        self.rendered = ""
        """The last script applied (the simulator's whole state)."""
        self.nft_binary = nft.NFT

    @property
    def real(self) -> bool:
        return self.ctx.backend.hypervisor_type == "KVM"

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(contract.APPLY, self.apply)
        registry.add(contract.SHOW, self.show)

    async def apply(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse_request(contract.ApplyCmd, body, "security groups")
        lab = self.ctx.backend.network.lab
        script = render(lab, cmd)
        async with self.ctx.host_network_lock:
            if self.real:
                if cmd.nics:
                    check_bridge_netfilter()
                await nft.apply_ruleset(
                    script, f"security groups of lab {lab}", binary=self.nft_binary
                )
            self.rendered = script
        return Ack()

    async def show(self, _body: dict[str, Any], _ctx: CommandContext) -> contract.ShowRsp:
        if self.real:
            bridge_table, ct_table = lab_tables(self.ctx.backend.network.lab)
            text = await nft.list_table("bridge", bridge_table, binary=self.nft_binary)
            text += await nft.list_table("inet", ct_table, binary=self.nft_binary)
        else:
            text = self.rendered
        return contract.ShowRsp(ruleset=text, taps=sorted(set(_EGRESS_CHAIN.findall(text))))
