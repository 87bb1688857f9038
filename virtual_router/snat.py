"""SNAT: one nftables table (``ip zsl_vr_nat``) owned by the appliance, always replaced whole.

The ruleset is applied with ``nft -f -`` as one transaction that declares the
table (so deleting it cannot fail), deletes it and defines it again: either the
new table is in place or the old one still is.  An empty SNAT state deletes the
table.  What ``nft list table`` printed right after applying is kept, so a
check can tell a deleted or edited table from ours.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from agentkit.nft import NFT, apply_ruleset, list_table
from contracts.virtual_router import NFT_TABLE

log = logging.getLogger(__name__)

IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


@dataclass(frozen=True)
class SnatRule:
    """One SNAT entry with interface names resolved from MACs."""

    private_interface: str
    private_network: IPv4Network
    public_interface: str
    public_ip: IPv4Address


def render_ruleset(rules: Iterable[SnatRule], table: str = NFT_TABLE) -> str:
    """The whole transaction for ``nft -f -``; with no rules it only deletes the table."""
    rules = list(rules)
    lines = [f"table ip {table}", f"delete table ip {table}"]
    if not rules:
        return "\n".join(lines) + "\n"
    lines += [
        f"table ip {table} {{",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat; policy accept;",
        *(
            f'\t\toifname "{r.public_interface}" ip saddr {r.private_network} snat to {r.public_ip}'
            for r in rules
        ),
        "\t}",
        "\tchain forward {",
        "\t\ttype filter hook forward priority filter; policy accept;",
        "\t\tct state established,related accept",
        *(
            f'\t\tiifname "{r.private_interface}" oifname "{r.public_interface}" '
            f"ip saddr {r.private_network} accept"
            for r in rules
        ),
        "\t}",
        "}",
    ]
    return "\n".join(lines) + "\n"


class NftSnat:
    """The table in the agent's namespace, and IPv4 forwarding while SNAT is on."""

    def __init__(self, *, binary: str = NFT, ip_forward: Path = IP_FORWARD) -> None:
        self.binary = binary
        self.ip_forward = ip_forward
        self.rules: tuple[SnatRule, ...] = ()
        self._listing = ""

    async def apply(self, rules: Iterable[SnatRule]) -> None:
        rules = tuple(rules)
        await apply_ruleset(render_ruleset(rules), NFT_TABLE, binary=self.binary)
        self.rules = rules
        self._listing = await self._list() if rules else ""
        if rules:
            self._enable_forwarding()

    async def repair(self) -> list[str]:
        """Put the table back (and forwarding on) if SNAT is set and they are not as applied;
        what was repaired."""
        if not self.rules:
            return []
        repaired = []
        if await self._list() != self._listing:
            log.warning("nft table %s is missing or changed; restoring it", NFT_TABLE)
            await self.apply(self.rules)
            repaired.append(f"nft table {NFT_TABLE} restored")
        if self.ip_forward.read_text().strip() != "1":
            self._enable_forwarding()
            repaired.append("ip_forward enabled")
        return repaired

    async def _list(self) -> str:
        return await list_table("ip", NFT_TABLE, binary=self.binary)

    def _enable_forwarding(self) -> None:
        self.ip_forward.write_text("1\n")


class SimulatedSnat:
    """--simulate: keeps the rules and what would be applied; runs no nft."""

    def __init__(self) -> None:
        self.rules: tuple[SnatRule, ...] = ()
        self.ruleset = ""

    async def apply(self, rules: Iterable[SnatRule]) -> None:
        self.rules = tuple(rules)
        self.ruleset = render_ruleset(self.rules)

    async def repair(self) -> list[str]:
        return []
