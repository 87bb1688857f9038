"""How a guest is reached from outside its private network: VIPs (addresses of a public
network), port-forwarding rules (VIP ports to a guest NIC's ports) and EIPs (a VIP as the
guest's own address), as the node's Query APIs answer them.

These APIs come with a plugin: a node without it has none of them (ztui then leaves
out what needs them).  What is here is data only; the verbs are in ``ztui.vm_reach``
and the networks view's Reach tab.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ztui.addressing import Services

Inventory = Mapping[str, Any]
Row = dict[str, Any]

PORT_FORWARDING = "PortForwarding"
EIP = "Eip"
"""The network service types a guest network needs from its virtual router."""
PROTOCOLS = ("TCP", "UDP")
SSH_PORT, SSH_VIP_PORT = 22, 2222
"""A guest's SSH port is forwarded from 2222 by default (the host's own 22 is taken)."""
REACH_APIS = frozenset(
    {
        "CreateVip",
        "DeleteVip",
        "CreatePortForwardingRule",
        "AttachPortForwardingRule",
        "DetachPortForwardingRule",
        "DeletePortForwardingRule",
        "CreateEip",
        "AttachEip",
        "DetachEip",
        "DeleteEip",
    }
)
"""The APIs that change what the Reach tab shows (a finished one refreshes it)."""

KIND_PF, KIND_EIP, KIND_VIP = "forward", "EIP", "VIP"
"""What a row of the Reach tab is."""


def default_vip_port(guest_port: int) -> int:
    """The VIP port offered for a guest port: 2222 for SSH, else the same port."""
    return SSH_VIP_PORT if guest_port == SSH_PORT else guest_port


def ports_text(start: Any, end: Any) -> str:
    return str(start) if end in (None, start) else f"{start}-{end}"


def reach_line(vip_ip: str, vip_port: Any, guest_port: Any, protocol: str) -> str:
    """How to reach a forwarded port: ``ssh -p 2222 root@192.168.253.10`` for a guest's
    TCP port 22, else ``192.168.253.10:8080`` (``/udp`` after a UDP one)."""
    if protocol == "TCP" and str(guest_port) == str(SSH_PORT):
        return f"ssh -p {vip_port} root@{vip_ip}"
    return f"{vip_ip}:{vip_port}" + ("/udp" if protocol == "UDP" else "")


def rule_reach(rule: Inventory) -> str:
    """The reach line of a rule (of its first port, for a range)."""
    return reach_line(
        str(rule.get("vipIp")),
        rule.get("vipPortStart"),
        rule.get("privatePortStart"),
        str(rule.get("protocolType")),
    )


def first_nic(nics: Iterable[Inventory], services: Services, service: str) -> Inventory | None:
    """The VM's first NIC (by device id) with an address on a network that gets
    ``service`` (``PortForwarding``, ``Eip``)."""
    for nic in sorted(nics, key=lambda n: int(n.get("deviceId") or 0)):
        if nic.get("ip") and service in services.by_l3.get(str(nic.get("l3NetworkUuid")), ()):
            return nic
    return None


def public_network_of(
    l3: Inventory, routers: Sequence[Inventory], offerings: Sequence[Inventory]
) -> str | None:
    """The public network a VIP for a guest of ``l3`` must come from: that of the router
    serving ``l3``, else of the offering a router for it would be made from (the zone's
    default, else its oldest), as the node chooses it."""
    for router in routers:
        if router.get("guestNetworkUuid") == l3.get("uuid") and router.get("publicNetworkUuid"):
            return str(router["publicNetworkUuid"])
    zone = [o for o in offerings if o.get("zoneUuid") == l3.get("zoneUuid")]
    zone.sort(key=lambda o: (not o.get("isDefault"), str(o.get("createDate") or "")))
    return str(zone[0]["publicNetworkUuid"]) if zone else None


@dataclass
class ReachData:
    """VIPs, rules and EIPs with the NICs and VMs they lead to, as Reach tab rows."""

    vips: list[Inventory]
    rules: list[Inventory]
    eips: list[Inventory]
    nics: Sequence[Inventory] = ()
    vms: Sequence[Inventory] = ()
    l3s: Sequence[Inventory] = ()

    def vm_of(self, nic_uuid: Any) -> str:
        """The name of the VM whose NIC it is."""
        nic = next((n for n in self.nics if n.get("uuid") == nic_uuid), None)
        if nic is None:
            return ""
        vm = next((v for v in self.vms if v.get("uuid") == nic.get("vmInstanceUuid")), None)
        return str(vm.get("name")) if vm else ""

    def network_of(self, vip: Inventory) -> str:
        l3 = next((n for n in self.l3s if n.get("uuid") == vip.get("l3NetworkUuid")), None)
        return str(l3.get("name")) if l3 else ""

    def used_vips(self) -> set[str]:
        return {str(r.get("vipUuid")) for r in (*self.rules, *self.eips)}

    def rule_row(self, rule: Inventory) -> Row:
        attached = bool(rule.get("vmNicUuid"))
        guest = str(rule.get("guestIp") or "")
        private = ports_text(rule.get("privatePortStart"), rule.get("privatePortEnd"))
        vm = self.vm_of(rule.get("vmNicUuid"))
        vip_ports = ports_text(rule.get("vipPortStart"), rule.get("vipPortEnd"))
        return {
            **rule,
            "kind": KIND_PF,
            "vip": f"{rule.get('vipIp')}:{vip_ports}",
            "target": f"{vm} {guest}:{private}".strip() if attached else f"(none):{private}",
            "protocol": rule.get("protocolType"),
            "allowed": rule.get("allowedCidr") or "any",
            "attached": "yes" if attached else "no",
            "reach": rule_reach(rule) if attached else "",
        }

    def eip_row(self, eip: Inventory) -> Row:
        attached = bool(eip.get("vmNicUuid"))
        vm = self.vm_of(eip.get("vmNicUuid"))
        return {
            **eip,
            "kind": KIND_EIP,
            "vip": str(eip.get("vipIp")),
            "target": f"{vm} {eip.get('guestIp') or ''}".strip() if attached else "(none)",
            "protocol": "all",
            "allowed": "any",
            "attached": "yes" if attached else "no",
            "reach": str(eip.get("vipIp")) if attached else "",
        }

    def vip_row(self, vip: Inventory) -> Row:
        return {
            **vip,
            "kind": KIND_VIP,
            "vip": str(vip.get("ip")),
            "target": f"unused (on {self.network_of(vip) or '?'})",
            "protocol": "",
            "allowed": "",
            "attached": "",
            "reach": "",
        }

    def rows(self) -> list[Row]:
        """Rules, then EIPs, then the VIPs nothing uses, each by VIP address."""
        used = self.used_vips()
        rows = [self.rule_row(r) for r in self.rules]
        rows += [self.eip_row(e) for e in self.eips]
        rows += [self.vip_row(v) for v in self.vips if str(v.get("uuid")) not in used]
        order = {KIND_PF: 0, KIND_EIP: 1, KIND_VIP: 2}
        return sorted(rows, key=lambda r: (order[r["kind"]], _ip_key(r["vip"]), r["vip"]))


def _ip_key(text: str) -> tuple[int, ...]:
    address = text.split(":")[0]
    try:
        return tuple(int(part) for part in address.split("."))
    except ValueError:
        return ()
