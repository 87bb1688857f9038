"""Host NAT for the default public network, and what guests may reach on the host
(blocking; run in a thread).

The default public network is an isolated bridge whose gateway address lives on
the host; its traffic leaves through the host's own uplink, masqueraded.  The
project owns one nftables table, ``inet zsl_host_nat``, with its own base chains:

* ``forward`` (filter, priority ``filter - 10``, policy accept) accepting what
  comes from or goes to a public bridge;
* ``postrouting`` (nat, priority ``srcnat``) masquerading each public CIDR when
  it leaves through an interface that is not one of the project's bridges
  (``zslbr-*``): with br_netfilter on, packets *bridged* across another of them pass
  this hook too, with that bridge as their output (e.g. a connection from the host to
  a VIP, forwarded by a router to a guest), and must keep their source;
* ``input`` (filter, priority ``filter - 10``, policy accept): what arrives from a
  public bridge for the host itself (its gateway address or any other) is dropped,
  but replies to connections the host opened (``ct state established,related``).
  Guests on a host-NAT network reach the world through the host, never a service
  of the host.  The product needs nothing more: a virtual router talks to its agent
  over a Unix socket, and guests get DHCP and DNS from the router, not the host.

Several labs (management nodes with their own data dirs, :mod:`agent.lab`) may
share the table.  Every rule says whose it is in its comment
(``zsl-hostnat lab=<lab id> …``), and a lab changes only its own rules: one
``nft -f -`` transaction (declare the table and chains, delete this lab's rules
by handle, add its rules anew), so a reader never sees half of a lab's rules and
other labs' rules stay as they were.  The table goes only when no rule is left.
Read-modify-write runs under a host-wide lock (an abstract Unix socket, so
nothing is left on disk and a dead holder frees it).  A lab's entries are read
back from its ``postrouting`` rules' comments, so an agent restart loses nothing.
Rules of an earlier version (comments without ``lab=``) belong to no lab; a lab
that sets or removes an entry on their bridge takes them over.

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

import contextlib
import errno
import ipaddress
import json
import logging
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pyroute2 import IPRoute

from agent.network import links
from agent.network.bridges import bridge_index
from agentkit.errors import AgentError
from agentkit.nft import MISSING, nft
from contracts import names

log = logging.getLogger(__name__)

FAMILY: Final = "inet"
TABLE: Final = "zsl_host_nat"
COMMENT_TAG: Final = "zsl-hostnat"
LAB_KEY: Final = "lab="
FORWARD_PRIORITY: Final = "filter - 10"
INPUT_PRIORITY: Final = "filter - 10"
LINK_WILDCARD: Final = f"{names.BRIDGE_PREFIX}*"
"""Every bridge of the project: traffic leaving by one is not leaving the host, so it is
never masqueraded."""
CHAINS: Final = {
    "forward": f"type filter hook forward priority {FORWARD_PRIORITY}; policy accept;",
    "postrouting": "type nat hook postrouting priority srcnat; policy accept;",
    "input": f"type filter hook input priority {INPUT_PRIORITY}; policy accept;",
}
IP_FORWARD: Final = Path("/proc/sys/net/ipv4/ip_forward")
LOCK_NAME: Final = b"\0zsl-host-nat-lock"
"""The abstract Unix socket whose bind is the host-wide lock on the table."""
LOCK_TIMEOUT: Final = 30.0


@dataclass(frozen=True, order=True)
class HostNatEntry:
    bridge_name: str
    gateway: ipaddress.IPv4Interface

    def comment(self, lab: str) -> str:
        """The ``postrouting`` rule's comment, from which the entry is read back."""
        return f"{COMMENT_TAG} {LAB_KEY}{lab} {self.bridge_name} {self.gateway.with_prefixlen}"


@dataclass(frozen=True)
class Rule:
    """One rule of the table, as far as ownership goes."""

    chain: str
    handle: int
    comment: str

    @property
    def ours(self) -> bool:
        """Made by some version of the agent (its comment starts with the tag)."""
        return self.comment.split(" ", 1)[0].startswith(COMMENT_TAG)

    @property
    def lab(self) -> str:
        """The lab that made it; "" for a rule of an earlier version (or not ours)."""
        parts = self.comment.split()
        if self.ours and len(parts) > 1 and parts[1].startswith(LAB_KEY):
            return parts[1][len(LAB_KEY) :]
        return ""

    @property
    def bridge(self) -> str:
        """The bridge it is about (every comment of every version names it)."""
        return next((p for p in self.comment.split() if p.startswith("zslbr-")), "")

    @property
    def entry(self) -> HostNatEntry | None:
        """The entry a ``postrouting`` rule stands for (this version's or an earlier one's)."""
        parts = self.comment.split()
        if self.chain != "postrouting" or not self.ours or parts[0] != COMMENT_TAG:
            return None
        rest = parts[2:] if self.lab else parts[1:]
        if len(rest) != 2:
            return None
        try:
            return HostNatEntry(rest[0], ipaddress.IPv4Interface(rest[1]))
        except ValueError:
            log.warning("ignoring the host NAT rule comment %r", self.comment)
            return None


# -- nft -----------------------------------------------------------------------------
def read_rules() -> list[Rule]:
    """Every rule of the table, with its handle (none if there is no table)."""
    try:
        out = nft(["-j", "-a", "list", "table", FAMILY, TABLE])
    except AgentError as exc:
        if MISSING in str(exc):
            return []
        raise
    rules = []
    for item in json.loads(out).get("nftables", []):
        rule: dict[str, Any] | None = item.get("rule")
        if rule is not None:
            rules.append(Rule(rule["chain"], int(rule["handle"]), rule.get("comment", "")))
    return rules


def read_entries(lab: str | None = None) -> list[HostNatEntry]:
    """The entries of ``lab`` (of every lab, and of no lab, when None)."""
    return sorted(
        {r.entry for r in read_rules() if r.entry is not None and (lab is None or r.lab == lab)}
    )


def labs() -> set[str]:
    """The labs that have rules in the table (for a reset that looks for leftovers)."""
    return {r.lab for r in read_rules() if r.lab}


def lab_rules(lab: str, entries: Iterable[HostNatEntry]) -> list[str]:
    """``lab``'s rules for ``entries``, as ``add rule`` lines."""
    entries = sorted(set(entries))
    prefix = f"add rule {FAMILY} {TABLE}"
    tag = f"{COMMENT_TAG} {LAB_KEY}{lab}"
    lines = []
    for bridge in sorted({e.bridge_name for e in entries}):
        lines += [
            f'{prefix} forward iifname "{bridge}" accept comment "{tag} forward {bridge}"',
            f'{prefix} forward oifname "{bridge}" accept comment "{tag} forward {bridge}"',
            f'{prefix} input iifname "{bridge}" ct state established,related accept '
            f'comment "{tag} input {bridge}"',
            f'{prefix} input iifname "{bridge}" drop comment "{tag} input {bridge}"',
        ]
    for e in entries:
        lines.append(
            f'{prefix} postrouting ip saddr {e.gateway.network} oifname != "{LINK_WILDCARD}" '
            f'masquerade comment "{e.comment(lab)}"'
        )
    return lines


def render(
    lab: str, entries: Iterable[HostNatEntry], current: list[Rule], taken_over: Iterable[str] = ()
) -> str:
    """The ``nft -f`` script that makes ``lab``'s rules those of ``entries`` in a table
    whose rules are ``current``; rules of no lab on a bridge of ``taken_over`` go too.
    Other labs' rules are kept; with none left (and no entries) the table goes."""
    entries = sorted(set(entries))
    bridges = {e.bridge_name for e in entries} | set(taken_over)
    replaced = [
        r for r in current if r.lab == lab or (r.ours and not r.lab and r.bridge in bridges)
    ]
    if not entries and len(replaced) == len(current):
        return f"table {FAMILY} {TABLE} {{}}\ndelete table {FAMILY} {TABLE}\n"
    lines = [f"table {FAMILY} {TABLE} {{"]
    lines += [f"  chain {name} {{ {spec} }}" for name, spec in CHAINS.items()]
    lines.append("}")
    lines += [f"delete rule {FAMILY} {TABLE} {r.chain} handle {r.handle}" for r in replaced]
    lines += lab_rules(lab, entries)
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def table_lock(timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the host-wide lock on the table (every lab's agent takes it)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                sock.bind(LOCK_NAME)
                break
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                if time.monotonic() > deadline:
                    raise AgentError(
                        f"the host NAT table stayed locked by another agent for {timeout:g}s"
                    ) from None
                time.sleep(0.02)
        yield
    finally:
        sock.close()


# -- set / remove ------------------------------------------------------------------------
def check_overlap(ipr: IPRoute, entry: HostNatEntry, bridge: int) -> None:
    network = entry.gateway.network
    for route in links.ipv4_routes(ipr):
        if route.oif == bridge or not network.overlaps(route.network):
            continue
        via = f" via {links.index_name(ipr, route.oif)}" if route.oif else ""
        raise AgentError(f"{network} overlaps the host route {route.network}{via}")


def _lab_entries(rules: list[Rule], lab: str, bridge_name: str) -> set[HostNatEntry]:
    """``lab``'s entries, and those of no lab on ``bridge_name`` (which it takes over)."""
    return {
        r.entry
        for r in rules
        if r.entry is not None and (r.lab == lab or (not r.lab and r.bridge == bridge_name))
    }


def set_entry(lab: str, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
    """The gateway address on the bridge and ``lab``'s rules with the entry; its rules
    are written anew even when the entry was there (a reconnect repairs them)."""
    entry = HostNatEntry(bridge_name, gateway)
    with IPRoute() as ipr, table_lock():
        index = bridge_index(ipr, bridge_name)
        check_overlap(ipr, entry, index)
        rules = read_rules()
        mine = _lab_entries(rules, lab, bridge_name)
        added = links.add_address(ipr, index, str(gateway.ip), gateway.network.prefixlen)
        try:
            enable_ip_forward()
            nft(["-f", "-"], render(lab, mine | {entry}, rules, [bridge_name]))
        except Exception:
            if added:
                links.delete_address(ipr, index, str(gateway.ip), gateway.network.prefixlen)
            raise
        if added or entry not in mine:
            log.info("host NAT for %s on %s (lab %s)", gateway, bridge_name, lab)


def remove_entry(lab: str, bridge_name: str, gateway: ipaddress.IPv4Interface) -> None:
    """The entry's rules of ``lab`` and the gateway address go; other labs' rules stay."""
    entry = HostNatEntry(bridge_name, gateway)
    with table_lock():
        rules = read_rules()
        mine = _lab_entries(rules, lab, bridge_name)
        if entry in mine or any(r.lab == lab and r.bridge == bridge_name for r in rules):
            nft(["-f", "-"], render(lab, mine - {entry}, rules, [bridge_name]))
            log.info("no more host NAT for %s on %s (lab %s)", gateway, bridge_name, lab)
    with IPRoute() as ipr:
        bridge = links.find(ipr, bridge_name)
        if bridge is not None:
            links.delete_address(ipr, bridge["index"], str(gateway.ip), gateway.network.prefixlen)


def remove_lab(lab: str) -> list[HostNatEntry]:
    """Every rule of ``lab`` and its gateway addresses go (a lab's reset); its entries."""
    with table_lock():
        rules = read_rules()
        entries = sorted({r.entry for r in rules if r.entry is not None and r.lab == lab})
        if any(r.lab == lab for r in rules):
            nft(["-f", "-"], render(lab, [], rules))
    with IPRoute() as ipr:
        for e in entries:
            bridge = links.find(ipr, e.bridge_name)
            if bridge is not None:
                links.delete_address(
                    ipr, bridge["index"], str(e.gateway.ip), e.gateway.network.prefixlen
                )
    return entries


def enable_ip_forward() -> None:
    """IPv4 forwarding on (host-wide; never turned off again: other things may rely on it)."""
    if IP_FORWARD.read_text().strip() != "1":
        IP_FORWARD.write_text("1\n")
        log.info("enabled IPv4 forwarding")
