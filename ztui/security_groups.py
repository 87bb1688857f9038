"""Security groups as the node's Query APIs answer them: groups of VM NICs with Ingress
and Egress rules, attached to Private L3 networks (ZStack's names).

These APIs come with a plugin (zsl_securitygroup): a node without it has none of them,
and ztui then leaves out what needs them.  What is here is data only (rows for the
networks view's Sec. groups tab); the verbs are in that view, the dialogs in
``ztui.dialogs.security_group``.

QuerySecurityGroup's inventory says nothing of the L3 networks a group is attached to
(no query of those references either): a group's networks are its
``attachedL3NetworkUuids`` when the node gives them (ZStack's field), else the networks
of its NICs, and the ones ztui attached it to in this session.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Inventory = Mapping[str, Any]
Row = dict[str, Any]

DIRECTIONS = ("Ingress", "Egress")
PROTOCOLS = ("TCP", "UDP", "ICMP", "ALL")
PORTED = ("TCP", "UDP")
"""The protocols whose rules have ports."""
PORT_MAX = 65535
SG_APIS = frozenset(
    {
        "CreateSecurityGroup",
        "DeleteSecurityGroup",
        "AddSecurityGroupRule",
        "DeleteSecurityGroupRule",
        "AddVmNicToSecurityGroup",
        "DeleteVmNicFromSecurityGroup",
        "AttachSecurityGroupToL3Network",
        "DetachSecurityGroupFromL3Network",
    }
)
"""The APIs that change what the Sec. groups tab shows (a finished one refreshes it)."""


def rule_ports(rule: Inventory) -> str:
    """``80``, ``8000-8100``, ``all`` (every port of TCP or UDP) or ``""`` (ICMP, ALL)."""
    start, end = rule.get("startPort"), rule.get("endPort")
    if rule.get("protocol") not in PORTED:
        return ""
    if start in (None, -1):
        return "all"
    return str(start) if end in (None, -1, start) else f"{start}-{end}"


def parse_ports(text: str) -> tuple[int, int] | None:
    """``80`` → (80, 80), ``8000-8100`` → (8000, 8100), ``""`` → (-1, -1) (every port);
    None when it is no port range."""
    text = text.strip()
    if not text:
        return -1, -1
    start_text, _, end_text = text.partition("-")
    end_text = end_text or start_text
    if not (start_text.strip().isdigit() and end_text.strip().isdigit()):
        return None
    start, end = int(start_text), int(end_text)
    if not (1 <= start <= end <= PORT_MAX):
        return None
    return start, end


@dataclass
class SgData:
    """Groups, rules and NIC references with the NICs, VMs and L3 networks they lead to."""

    groups: list[Inventory]
    rules: list[Inventory]
    refs: list[Inventory]
    nics: Sequence[Inventory] = ()
    vms: Sequence[Inventory] = ()
    l3s: Sequence[Inventory] = ()
    attached: dict[str, set[str]] = field(default_factory=dict)
    """Group uuid → L3 networks ztui attached it to (the node does not say)."""

    def group_name(self, uuid: Any) -> str:
        return next((str(g["name"]) for g in self.groups if g["uuid"] == uuid), str(uuid))

    def l3_name(self, uuid: Any) -> str:
        return next((str(n["name"]) for n in self.l3s if n["uuid"] == uuid), str(uuid))

    def nic(self, uuid: Any) -> Inventory | None:
        return next((n for n in self.nics if n.get("uuid") == uuid), None)

    def vm_name(self, uuid: Any) -> str:
        return next((str(v["name"]) for v in self.vms if v.get("uuid") == uuid), "")

    def rules_of(self, group_uuid: str) -> list[Inventory]:
        return [r for r in self.rules if r.get("securityGroupUuid") == group_uuid]

    def refs_of(self, group_uuid: str) -> list[Inventory]:
        return [r for r in self.refs if r.get("securityGroupUuid") == group_uuid]

    def l3s_of(self, group: Inventory) -> list[str]:
        """The uuids of the L3 networks the group is known to be attached to (see the
        module's doc), by name."""
        given = group.get("attachedL3NetworkUuids")
        uuids = set(given or ()) | self.attached.get(str(group["uuid"]), set())
        for ref in self.refs_of(str(group["uuid"])):
            nic = self.nic(ref.get("vmNicUuid"))
            if nic is not None:
                uuids.add(str(nic.get("l3NetworkUuid")))
        return sorted(uuids, key=self.l3_name)

    # -- rows -------------------------------------------------------------------------

    def group_row(self, group: Inventory) -> Row:
        uuid = str(group["uuid"])
        return {
            **group,
            "l3Names": ", ".join(self.l3_name(u) for u in self.l3s_of(group)),
            "ruleCount": str(len(self.rules_of(uuid))),
            "nicCount": str(len(self.refs_of(uuid))),
        }

    def group_rows(self) -> list[Row]:
        return [self.group_row(g) for g in self.groups]

    def peer(self, rule: Inventory) -> str:
        if rule.get("allowedCidr"):
            return str(rule["allowedCidr"])
        if rule.get("remoteSecurityGroupUuid"):
            return f"group {self.group_name(rule['remoteSecurityGroupUuid'])}"
        return "any"

    def rule_row(self, rule: Inventory) -> Row:
        return {
            **rule,
            "direction": rule.get("type"),
            "ports": rule_ports(rule),
            "peer": self.peer(rule),
        }

    def rule_rows(self, group_uuid: str) -> list[Row]:
        """Ingress first, then by protocol and port."""
        rows = [self.rule_row(r) for r in self.rules_of(group_uuid)]
        return sorted(
            rows,
            key=lambda r: (
                DIRECTIONS.index(r["direction"]) if r["direction"] in DIRECTIONS else 9,
                str(r.get("protocol")),
                int(r.get("startPort") or -1),
                r["peer"],
            ),
        )

    def nic_row(self, ref: Inventory) -> Row:
        nic = self.nic(ref.get("vmNicUuid")) or {}
        return {
            **ref,
            "vmName": self.vm_name(ref.get("vmInstanceUuid")) or "?",
            "ip": str(nic.get("ip") or ""),
            "l3Name": self.l3_name(nic.get("l3NetworkUuid")) if nic else "",
        }

    def nic_rows(self, group_uuid: str) -> list[Row]:
        rows = [self.nic_row(r) for r in self.refs_of(group_uuid)]
        return sorted(rows, key=lambda r: (r["vmName"], r["ip"]))

    def rule_text(self, rule: Inventory) -> str:
        """``Ingress TCP 80 from 10.0.10.7/32``: one rule in words."""
        row = self.rule_row(rule)
        ports = f" {row['ports']}" if row["ports"] else ""
        way = "from" if row["direction"] == "Ingress" else "to"
        return f"{row['direction']} {row.get('protocol')}{ports} {way} {row['peer']}"

    def candidates(self, group: Inventory, private: set[str]) -> list[Row]:
        """The VM NICs that may join the group: those with an address on its L3 networks
        as the node gives them, else (the node does not say) on every Private network in
        ``private``; none already in the group."""
        given = group.get("attachedL3NetworkUuids")
        l3s = set(given) if given is not None else private
        inside = {r.get("vmNicUuid") for r in self.refs_of(str(group["uuid"]))}
        found = [
            {**n, "vmName": self.vm_name(n.get("vmInstanceUuid")) or "?",
             "l3Name": self.l3_name(n.get("l3NetworkUuid"))}
            for n in self.nics
            if n.get("type", "VNIC") == "VNIC"
            and n.get("ip")
            and n.get("l3NetworkUuid") in l3s
            and n.get("uuid") not in inside
        ]  # fmt: skip
        return sorted(found, key=lambda n: (n["vmName"], str(n.get("ip"))))
