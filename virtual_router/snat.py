"""SNAT: one nftables table (``ip zsl_vr_nat``) owned by the appliance, always replaced whole.

The ruleset is applied with ``nft -f -`` as one transaction that declares the
table (so deleting it cannot fail), deletes it and defines it again: either the
new table is in place or the old one still is.  An empty SNAT state deletes the
table.  What ``nft list table`` printed right after applying is kept, so a
check can tell a deleted or edited table from ours.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from agentkit.errors import AgentError
from contracts.virtual_router import NFT_TABLE

log = logging.getLogger(__name__)

NFT = "/usr/sbin/nft"
NFT_TIMEOUT = 10.0
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


async def run_nft(*args: str, stdin: str | None = None, binary: str = NFT) -> tuple[int, str, str]:
    """Run ``nft args`` (feeding ``stdin``); (exit status, stdout, stderr)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise AgentError(f"{binary} is not installed (Debian package nftables)") from None
    try:
        async with asyncio.timeout(NFT_TIMEOUT):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        raise AgentError(f"{binary} {' '.join(args)} timed out after {NFT_TIMEOUT:g}s") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace").strip()


class NftSnat:
    """The table in the agent's namespace, and IPv4 forwarding while SNAT is on."""

    def __init__(self, *, binary: str = NFT, ip_forward: Path = IP_FORWARD) -> None:
        self.binary = binary
        self.ip_forward = ip_forward
        self.rules: tuple[SnatRule, ...] = ()
        self._listing = ""

    async def apply(self, rules: Iterable[SnatRule]) -> None:
        rules = tuple(rules)
        code, _, err = await run_nft("-f", "-", stdin=render_ruleset(rules), binary=self.binary)
        if code != 0:
            raise AgentError(f"nft refused the {NFT_TABLE} ruleset: {err}")
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
        code, out, _ = await run_nft("list", "table", "ip", NFT_TABLE, binary=self.binary)
        return out if code == 0 else ""

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
