"""Host NAT for the default public network (blocking; run in a thread).

The default public network is an isolated bridge whose gateway address lives on
the host; its traffic leaves through the host's own uplink, masqueraded.  The
project owns one nftables table, ``inet zsl_host_nat``, with its own base chains:

* ``forward`` (filter, priority ``filter - 10``, policy accept) accepting what
  comes from or goes to a public bridge;
* ``postrouting`` (nat, priority ``srcnat``) masquerading each public CIDR when
  it leaves through any interface other than its bridge.

The table is derived from every current entry and replaced in one ``nft -f -``
transaction (make it if missing, delete it, write it anew), so a reader never
sees half of it; removing the last entry deletes it.  The entries themselves are
read back from the rules' comments, so an agent restart loses nothing.

A limitation nftables cannot lift: a packet must be accepted by *every* base
chain on a hook, so when another table (Docker's ``ip filter FORWARD`` with
policy drop, say) drops forwarded traffic, this table's accept does not save it,
whatever its priority (checked on this host, and by
tests/agent/test_network.py: a connection through the NAT works, then times
out once a foreign forward chain with policy drop is added, at priority
``filter`` or ``-300``).  The fix belongs to the owner of that table (with
Docker: ``iptables -I DOCKER-USER -i zslbr-+ -j ACCEPT`` and ``-o zslbr-+ -j
ACCEPT``); the agent never edits tables it does not own.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pyroute2 import IPRoute

from agent.errors import AgentError
from agent.network import links
from agent.network.bridges import bridge_index

log = logging.getLogger(__name__)

FAMILY: Final = "inet"
TABLE: Final = "zsl_host_nat"
COMMENT_TAG: Final = "zsl-hostnat"
FORWARD_PRIORITY: Final = "filter - 10"
IP_FORWARD: Final = Path("/proc/sys/net/ipv4/ip_forward")
NFT_TIMEOUT: Final = 30.0


@dataclass(frozen=True, order=True)
class HostNatEntry:
    bridge_name: str
    gateway: ipaddress.IPv4Interface

    @property
    def comment(self) -> str:
        return f"{COMMENT_TAG} {self.bridge_name} {self.gateway.with_prefixlen}"


# -- nft -----------------------------------------------------------------------------
def nft(args: list[str], script: str | None = None) -> str:
    try:
        done = subprocess.run(
            ["nft", *args],
            input=script,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise AgentError("nft is not installed (Debian package nftables)") from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"nft {' '.join(args)} did not finish within {NFT_TIMEOUT:g}s") from None
    if done.returncode != 0:
        raise AgentError(f"nft {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def read_entries() -> list[HostNatEntry]:
    """The entries the current table stands for (none if there is no table)."""
    try:
        out = nft(["-j", "list", "table", FAMILY, TABLE])
    except AgentError as exc:
        if "No such file or directory" in str(exc):
            return []
        raise
    entries = set()
    for item in json.loads(out).get("nftables", []):
        comment = item.get("rule", {}).get("comment", "")
        parts = comment.split()
        if len(parts) == 3 and parts[0] == COMMENT_TAG:
            try:
                entries.add(HostNatEntry(parts[1], ipaddress.IPv4Interface(parts[2])))
            except ValueError:
                log.warning("ignoring the host NAT rule comment %r", comment)
    return sorted(entries)


def render(entries: list[HostNatEntry]) -> str:
    """The ``nft -f`` script that replaces the table with one made of ``entries``."""
    lines = [f"table {FAMILY} {TABLE} {{}}", f"delete table {FAMILY} {TABLE}"]
    if not entries:
        return "\n".join(lines) + "\n"
    bridges = sorted({e.bridge_name for e in entries})
    lines += [
        f"table {FAMILY} {TABLE} {{",
        "  chain forward {",
        f"    type filter hook forward priority {FORWARD_PRIORITY}; policy accept;",
    ]
    for bridge in bridges:
        lines.append(f'    iifname "{bridge}" accept comment "{COMMENT_TAG}-forward {bridge}"')
        lines.append(f'    oifname "{bridge}" accept comment "{COMMENT_TAG}-forward {bridge}"')
    lines += [
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
    ]
    for e in entries:
        lines.append(
            f'    ip saddr {e.gateway.network} oifname != "{e.bridge_name}" masquerade '
            f'comment "{e.comment}"'
        )
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def apply(entries: list[HostNatEntry]) -> None:
    nft(["-f", "-"], render(entries))


# -- set / remove ------------------------------------------------------------------------
def check_overlap(ipr: IPRoute, entry: HostNatEntry, bridge: int) -> None:
    network = entry.gateway.network
    for route in links.ipv4_routes(ipr):
        if route.oif == bridge or not network.overlaps(route.network):
            continue
        via = f" via {links.index_name(ipr, route.oif)}" if route.oif else ""
        raise AgentError(f"{network} overlaps the host route {route.network}{via}")


def set_entry(bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
    entry = HostNatEntry(bridge_name, gateway)
    with IPRoute() as ipr:
        index = bridge_index(ipr, bridge_name)
        check_overlap(ipr, entry, index)
        entries = read_entries()
        added = links.add_address(ipr, index, str(gateway.ip), gateway.network.prefixlen)
        try:
            enable_ip_forward()
            if entry not in entries:
                apply(sorted({*entries, entry}))
                log.info("host NAT for %s on %s", gateway, bridge_name)
        except Exception:
            if added:
                links.delete_address(ipr, index, str(gateway.ip), gateway.network.prefixlen)
            raise


def remove_entry(bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
    entry = HostNatEntry(bridge_name, gateway)
    entries = read_entries()
    if entry in entries:
        apply([e for e in entries if e != entry])
        log.info("no more host NAT for %s on %s", gateway, bridge_name)
    with IPRoute() as ipr:
        bridge = links.find(ipr, bridge_name)
        if bridge is not None:
            links.delete_address(ipr, bridge["index"], str(gateway.ip), gateway.network.prefixlen)


def enable_ip_forward() -> None:
    """IPv4 forwarding on (host-wide; never turned off again: other things may rely on it)."""
    if IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")
        log.info("enabled IPv4 forwarding")
