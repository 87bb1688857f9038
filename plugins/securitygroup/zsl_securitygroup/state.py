"""What a host must enforce, computed from the database: the one place that turns groups,
rules and memberships into the agent's :class:`~zsl_securitygroup.contract.ApplyCmd`.

A NIC is enforced on the host its VM runs on (or is being started on); its chains hold
the rules of every group it is in.  A rule naming a remote group admits the addresses of
that group's NICs, wherever their VMs run (running or not: an address is the NIC's until
the NIC goes).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.network.l3.models import VmNicVO
from core.vm.models import VmInstanceVO
from zsl_securitygroup.contract import ApplyCmd, GroupTO, Policy, RuleTO, SgNicTO
from zsl_securitygroup.models import SecurityGroupRuleVO, VmNicSecurityGroupRefVO

NOT_ON_A_HOST = ("Created", "Stopped", "Destroyed", "Expunging")
"""VM states whose NICs have no tap on any host (the VM's chains are not there)."""


@dataclass(frozen=True)
class Policies:
    ingress: Policy = "drop"
    egress: Policy = "accept"


@dataclass(frozen=True)
class Placement:
    """A VM whose host the rows do not say yet (being started on ``host_uuid``), or
    whose chains must go although its row still names a host (being released)."""

    vm_uuid: str
    host_uuid: str | None


def member_rows(session: Session) -> list[tuple[VmNicSecurityGroupRefVO, VmNicVO, VmInstanceVO]]:
    rows = session.execute(
        select(VmNicSecurityGroupRefVO, VmNicVO, VmInstanceVO)
        .join(VmNicVO, VmNicVO.uuid == VmNicSecurityGroupRefVO.vm_nic_uuid)
        .join(VmInstanceVO, VmInstanceVO.uuid == VmNicVO.vm_instance_uuid)
        .order_by(VmNicVO.internal_name, VmNicSecurityGroupRefVO.security_group_uuid)
    )
    return [(ref, nic, vm) for ref, nic, vm in rows]


def host_of(vm: VmInstanceVO, placements: Iterable[Placement] = ()) -> str | None:
    """The host whose chains the VM's NICs are in (None: none)."""
    for placement in placements:
        if placement.vm_uuid == vm.uuid:
            return placement.host_uuid
    return vm.host_uuid if vm.state not in NOT_ON_A_HOST else None


def hosts_with_members(session: Session, placements: Iterable[Placement] = ()) -> set[str]:
    """The hosts where some NIC of a group is enforced."""
    placements = list(placements)
    found = {host_of(vm, placements) for _ref, _nic, vm in member_rows(session)}
    found.update(p.host_uuid for p in placements)
    return {h for h in found if h is not None}


def vm_host(session: Session, vm_uuid: str) -> str | None:
    """The host a VM runs on or last ran on (where a release finds its chains)."""
    vm = session.get(VmInstanceVO, vm_uuid)
    if vm is None:
        return None
    return vm.host_uuid or vm.last_host_uuid


def host_state(
    session: Session,
    host_uuid: str,
    policies: Policies,
    placements: Iterable[Placement] = (),
) -> ApplyCmd:
    """The whole state of ``host_uuid``: its group NICs, their groups' rules, and the
    members of the remote groups those rules name (the addresses of their NICs enforced
    on some host: a stopped VM's address may be handed out again)."""
    placements = list(placements)
    enforced = [
        (ref, nic, host)
        for ref, nic, vm in member_rows(session)
        if nic.ip and (host := host_of(vm, placements)) is not None
    ]
    nics: dict[str, SgNicTO] = {}
    for ref, nic, host in enforced:
        if host != host_uuid:
            continue
        to = nics.get(nic.uuid)
        if to is None:
            to = nics[nic.uuid] = SgNicTO(
                uuid=nic.uuid,
                tap=nic.internal_name,
                mac=nic.mac,
                ip=nic.ip or "",
                gateway=nic.gateway or "",
                group_uuids=[],
            )
        to.group_uuids.append(ref.security_group_uuid)
    group_uuids = sorted({g for nic in nics.values() for g in nic.group_uuids})
    rules = session.scalars(
        select(SecurityGroupRuleVO)
        .where(
            SecurityGroupRuleVO.security_group_uuid.in_(group_uuids),
            SecurityGroupRuleVO.state == "Enabled",
        )
        .order_by(SecurityGroupRuleVO.security_group_uuid, SecurityGroupRuleVO.uuid)
    )
    groups = {uuid: GroupTO(uuid=uuid, rules=[]) for uuid in group_uuids}
    for rule in rules:
        groups[rule.security_group_uuid].rules.append(rule_to(rule))
    remotes = {r.remote_group_uuid for g in groups.values() for r in g.rules if r.remote_group_uuid}
    members: dict[str, set[str]] = {g: set() for g in sorted(remotes)}
    for ref, nic, _host in enforced:
        if ref.security_group_uuid in members and nic.ip:
            members[ref.security_group_uuid].add(nic.ip)
    return ApplyCmd(
        nics=sorted(nics.values(), key=lambda n: n.tap),
        groups=list(groups.values()),
        remote_members={g: sorted(ips, key=ipaddress.IPv4Address) for g, ips in members.items()},
        ingress_policy=policies.ingress,
        egress_policy=policies.egress,
    )


def rule_to(rule: SecurityGroupRuleVO) -> RuleTO:
    return RuleTO(
        uuid=rule.uuid,
        type=rule.type,  # type: ignore[arg-type]  # one of the two: checked by the API
        protocol=rule.protocol,  # type: ignore[arg-type]
        start_port=rule.start_port,
        end_port=rule.end_port,
        allowed_cidr=rule.allowed_cidr or "",
        remote_group_uuid=rule.remote_security_group_uuid or "",
    )
