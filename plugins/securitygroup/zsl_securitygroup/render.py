"""The nftables ruleset of a host's security groups for one lab (pure: text in, text out).

Two tables, replaced together in one ``nft -f`` transaction:

``bridge zsl_sg_<lab>``: per-NIC chains, entered through verdict maps keyed by the tap::

    map out_vmap { type ifname : verdict; }   # tap -> jump o_<tap> (what the VM sends)
    map in_vmap  { type ifname : verdict; }   # tap -> jump i_<tap> (what it receives)
    chain forward { type filter hook forward priority -200; iifname vmap @out_vmap;
                    oifname vmap @in_vmap }
    chain input   { ... hook input ...;  iifname vmap @out_vmap }   # VM -> the host
    chain output  { ... hook output ...; oifname vmap @in_vmap }    # the host -> VM

A packet between two guests passes the sender's ``o_`` chain, then the receiver's ``i_``
chain: an ``o_`` chain admits with ``return`` (the base chain goes on to the receiver's
ingress) and refuses with ``drop``.  A group's rules are written into the chains of each of
its NICs, each commented with its rule's uuid.

``o_<tap>``: the NIC's own MAC, ARP and IPv4 source (0.0.0.0 too, for DHCP) or drop; then
DHCP, DNS to the router, the metadata service (169.254.169.254 tcp 80), established and
related traffic, ARP, the Egress rules, and the egress policy.  ``i_<tap>``: ARP, DHCP
replies, established and related traffic, the Ingress rules, and the ingress policy.

``inet zsl_sgct_<lab>``: this kernel has no conntrack in the bridge family (``ct state``
in a bridge table fails with "Protocol error"), but br_netfilter passes bridged IPv4
packets through the inet hooks, where conntrack works: a ``prerouting`` chain (priority
-150, after conntrack) and an ``output`` chain set :data:`ESTABLISHED_MARK` on the
established and related packets from or to an enforced NIC's address, and the bridge
chains test the bit.  Only those packets are marked.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Final

from agentkit.errors import ArgumentError
from zsl_securitygroup.contract import (
    ApplyCmd,
    GroupTO,
    RuleTO,
    SgNicTO,
    ct_table_name,
    table_name,
)

ESTABLISHED_MARK: Final = 0x00100000
"""The packet mark bit the inet table sets on established/related packets."""
METADATA: Final = "169.254.169.254"
PRIORITY: Final = -200
CT_PRIORITY: Final = -150

_TAP = re.compile(r"zsl[a-z0-9]{1,12}")
_UUID = re.compile(r"[A-Za-z0-9]{1,64}")
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_LAB = re.compile(r"zsl[0-9a-f]{1,20}")
MARK_TEST: Final = f"meta mark & 0x{ESTABLISHED_MARK:08x} == 0x{ESTABLISHED_MARK:08x}"


# -- checks: every value that reaches the script is one the grammar cannot misread -----------
def _bad(what: str, value: object) -> ArgumentError:
    return ArgumentError(f"security groups: {what} {value!r} is not valid")


def _tap(value: str) -> str:
    if not _TAP.fullmatch(value):
        raise _bad("tap name (zsl and up to 12 lower-case letters or digits)", value)
    return value


def _uuid(value: str, what: str) -> str:
    if not _UUID.fullmatch(value):
        raise _bad(what, value)
    return value


def _ip(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise _bad(what, value) from None


def _cidr(value: str, what: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=False))
    except ValueError:
        raise _bad(what, value) from None


def lab_tables(lab: str) -> tuple[str, str]:
    if not _LAB.fullmatch(lab):
        raise _bad("lab id", lab)
    return table_name(lab), ct_table_name(lab)


# -- rules ---------------------------------------------------------------------------------------
def set_name(group_uuid: str) -> str:
    """The set of a remote group's member addresses."""
    return f"m_{_uuid(group_uuid, 'group uuid')}"


def _ports(rule: RuleTO) -> str:
    start, end = rule.start_port, rule.end_port
    if start < 0 and end < 0:
        return ""
    if not (0 <= start <= end <= 65535):
        raise _bad(f"port range of rule {rule.uuid}", f"{start}-{end}")
    return str(start) if start == end else f"{start}-{end}"


def rule_line(rule: RuleTO, remote_groups: set[str]) -> str:
    """The match of one rule (without its verdict): the peer (source of an Ingress rule,
    destination of an Egress one), the protocol and ports."""
    _uuid(rule.uuid, "rule uuid")
    field = "saddr" if rule.type == "Ingress" else "daddr"
    parts = []
    if rule.remote_group_uuid:
        if rule.remote_group_uuid not in remote_groups:
            raise _bad(
                f"remote group of rule {rule.uuid} (no members sent)", rule.remote_group_uuid
            )
        parts.append(f"ip {field} @{set_name(rule.remote_group_uuid)}")
    elif rule.allowed_cidr and _cidr(rule.allowed_cidr, "allowedCidr") != "0.0.0.0/0":
        parts.append(f"ip {field} {_cidr(rule.allowed_cidr, 'allowedCidr')}")
    ports = _ports(rule)
    if rule.protocol in ("TCP", "UDP"):
        proto = rule.protocol.lower()
        parts.append(f"{proto} dport {ports}" if ports else f"meta l4proto {proto}")
    elif rule.protocol == "ICMP":
        parts.append("meta l4proto icmp")
    if not parts or not parts[0].startswith("ip "):
        parts.insert(0, "meta protocol ip")
    return " ".join(parts)


def _comment(text: str) -> str:
    return f'comment "{text}"'


def nic_chains(
    nic: SgNicTO, groups: dict[str, GroupTO], remote_groups: set[str], cmd: ApplyCmd
) -> list[str]:
    """The ``o_`` and ``i_`` chains of one NIC."""
    tap = _tap(nic.tap)
    mac = nic.mac.lower()
    if not _MAC.fullmatch(mac):
        raise _bad(f"MAC of NIC {nic.uuid}", nic.mac)
    ip = _ip(nic.ip, f"address of NIC {nic.uuid}")
    rules = [r for g in nic.group_uuids for r in _group(groups, g).rules]
    out = [
        f"ether saddr != {mac} drop {_comment('antispoof mac')}",
        f"ether type arp arp saddr ether != {mac} drop {_comment('antispoof arp mac')}",
        f"ether type arp arp saddr ip != {{ {ip}, 0.0.0.0 }} drop {_comment('antispoof arp ip')}",
        f"meta protocol ip ip saddr != {{ {ip}, 0.0.0.0 }} drop {_comment('antispoof ip')}",
        f"udp sport 68 udp dport 67 return {_comment('dhcp')}",
    ]
    if nic.gateway:
        gw = _ip(nic.gateway, f"gateway of NIC {nic.uuid}")
        out += [
            f"ip daddr {gw} udp dport 53 return {_comment('dns')}",
            f"ip daddr {gw} tcp dport 53 return {_comment('dns')}",
        ]
    out += [
        f"ip daddr {METADATA} tcp dport 80 return {_comment('metadata')}",
        f"{MARK_TEST} return {_comment('established')}",
        f"ether type arp return {_comment('arp')}",
    ]
    out += [
        f"{rule_line(r, remote_groups)} return {_comment(f'rule={r.uuid}')}"
        for r in rules
        if r.type == "Egress"
    ]
    out.append(
        f"{'return' if cmd.egress_policy == 'accept' else 'drop'} {_comment('egress policy')}"
    )
    into = [
        f"ether type arp accept {_comment('arp')}",
        f"udp sport 67 udp dport 68 accept {_comment('dhcp')}",
        f"{MARK_TEST} accept {_comment('established')}",
    ]
    into += [
        f"{rule_line(r, remote_groups)} accept {_comment(f'rule={r.uuid}')}"
        for r in rules
        if r.type == "Ingress"
    ]
    into.append(f"{cmd.ingress_policy} {_comment('ingress policy')}")
    return [*_chain(f"o_{tap}", out), *_chain(f"i_{tap}", into)]


def _group(groups: dict[str, GroupTO], uuid: str) -> GroupTO:
    group = groups.get(uuid)
    if group is None:
        raise _bad("group of a NIC (not sent)", uuid)
    return group


def _chain(name: str, body: Iterable[str]) -> list[str]:
    return [f"\tchain {name} {{", *(f"\t\t{line}" for line in body), "\t}"]


def _elements(items: Iterable[str]) -> str:
    items = list(items)
    return f"elements = {{ {', '.join(items)} }}" if items else ""


# -- the script ------------------------------------------------------------------------------------
def render(lab: str, cmd: ApplyCmd) -> str:
    """The tables of ``cmd`` for ``lab``, as an ``nft -f`` script that replaces the lab's
    tables (and only removes them when ``cmd`` has no NIC)."""
    bridge_table, ct_table = lab_tables(lab)
    lines = [
        f"table bridge {bridge_table} {{}}",
        f"delete table bridge {bridge_table}",
        f"table inet {ct_table} {{}}",
        f"delete table inet {ct_table}",
    ]
    if not cmd.nics:
        return "\n".join(lines) + "\n"
    groups = {g.uuid: g for g in cmd.groups}
    remote_groups = set(cmd.remote_members)
    nics = sorted(cmd.nics, key=lambda n: n.tap)
    taps = [_tap(n.tap) for n in nics]
    if len(set(taps)) != len(taps):
        raise ArgumentError("security groups: a tap is named twice")
    lines.append(f"table bridge {bridge_table} {{")
    for group_uuid in sorted(remote_groups):
        members = [
            _ip(ip, f"member of group {group_uuid}") for ip in cmd.remote_members[group_uuid]
        ]
        body = f"type ipv4_addr; flags interval; {_elements(members)}".rstrip()
        lines.append(f"\tset {set_name(group_uuid)} {{ {body} }}")
    for name, prefix in (("out_vmap", "o_"), ("in_vmap", "i_")):
        elements = _elements(f'"{tap}" : jump {prefix}{tap}' for tap in taps)
        lines.append(f"\tmap {name} {{ type ifname : verdict; {elements} }}")
    hook = f"type filter hook {{}} priority {PRIORITY}; policy accept;"
    lines += _chain(
        "forward", [hook.format("forward"), "iifname vmap @out_vmap", "oifname vmap @in_vmap"]
    )
    lines += _chain("input", [hook.format("input"), "iifname vmap @out_vmap"])
    lines += _chain("output", [hook.format("output"), "oifname vmap @in_vmap"])
    for nic in nics:
        lines += nic_chains(nic, groups, remote_groups, cmd)
    lines.append("}")
    addresses = _elements(sorted({_ip(n.ip, "NIC address") for n in nics}))
    mark = f"ct state established,related meta mark set meta mark | 0x{ESTABLISHED_MARK:08x}"
    ct_hook = f"type filter hook {{}} priority {CT_PRIORITY}; policy accept;"
    lines += [
        f"table inet {ct_table} {{",
        f"\tset nics {{ type ipv4_addr; {addresses} }}",
        *_chain("pre", [ct_hook.format("prerouting"), f"ip saddr @nics {mark}",
                        f"ip daddr @nics {mark}"]),
        *_chain("out", [ct_hook.format("output"), f"ip daddr @nics {mark}"]),
        "}",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"
