"""The appliance's port forwarding and EIPs as one nftables table (``ip zsl_vr_vip``),
always replaced whole in one ``nft -f`` transaction, like the router's SNAT table.

* ``prerouting`` (dstnat): a rule per port-forwarding rule (VIP, protocol, ports, and the
  allowed sources) and per EIP (every protocol), each commented with its uuid;
* ``postrouting`` at ``srcnat - 10``: a guest with an EIP leaves by the public interface
  as its EIP; the router's SNAT table, at ``srcnat``, never sees those connections (the
  first NAT chain that binds a connection decides);
* ``input``: what reaches a VIP itself was forwarded by no rule (a port without one, or a
  source outside a rule's ``allowedCidr``): refused (TCP reset, ICMP port unreachable).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from zsl_vip.contract import NFT_TABLE, EipTO, PortForwardingRuleTO


@dataclass(frozen=True)
class EipRule:
    """An EIP with the appliance's public interface resolved from its MAC."""

    eip: EipTO
    public_interface: str


def _ports(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"


def pf_rule(r: PortForwardingRuleTO) -> str:
    proto = r.protocol_type.lower()
    match = f"ip daddr {r.vip_ip}"
    if r.allowed_cidr is not None:
        match += f" ip saddr {r.allowed_cidr}"
    match += f" {proto} dport {_ports(r.vip_port_start, r.vip_port_end)}"
    if r.vip_port_start == r.private_port_start:
        nat = f"dnat to {r.private_ip}"  # the same ports: the destination port is kept
    elif r.vip_port_start == r.vip_port_end:
        nat = f"dnat to {r.private_ip}:{r.private_port_start}"
    else:
        shift = r.private_port_start - r.vip_port_start
        pairs = ", ".join(
            f"{port} : {r.private_ip} . {port + shift}"
            for port in range(r.vip_port_start, r.vip_port_end + 1)
        )
        nat = f"dnat ip to {proto} dport map {{ {pairs} }}"
    return f'{match} {nat} comment "pf={r.uuid}"'


def render_ruleset(
    vips: Iterable[IPv4Address],
    rules: Iterable[PortForwardingRuleTO],
    eips: Iterable[EipRule],
    table: str = NFT_TABLE,
) -> str:
    """The whole transaction; with nothing to hold it only deletes the table."""
    vips, rules, eips = sorted(set(vips)), list(rules), list(eips)
    lines = [f"table ip {table}", f"delete table ip {table}"]
    if not (vips or rules or eips):
        return "\n".join(lines) + "\n"
    addresses = ", ".join(str(v) for v in vips)
    lines += [
        f"table ip {table} {{",
        "\tchain prerouting {",
        "\t\ttype nat hook prerouting priority dstnat; policy accept;",
        *(f"\t\t{pf_rule(r)}" for r in rules),
        *(
            f'\t\tip daddr {e.eip.vip_ip} dnat to {e.eip.guest_ip} comment "eip={e.eip.uuid}"'
            for e in eips
        ),
        "\t}",
        "\tchain postrouting {",
        "\t\ttype nat hook postrouting priority srcnat - 10; policy accept;",
        *(
            f'\t\toifname "{e.public_interface}" ip saddr {e.eip.guest_ip} '
            f'snat to {e.eip.vip_ip} comment "eip={e.eip.uuid}"'
            for e in eips
        ),
        "\t}",
        "\tchain input {",
        "\t\ttype filter hook input priority filter; policy accept;",
    ]
    if vips:
        lines += [
            f'\t\tip daddr {{ {addresses} }} meta l4proto tcp reject with tcp reset comment "vip"',
            f'\t\tip daddr {{ {addresses} }} meta l4proto != icmp reject comment "vip"',
        ]
    lines += ["\t}", "}"]
    return "\n".join(lines) + "\n"
