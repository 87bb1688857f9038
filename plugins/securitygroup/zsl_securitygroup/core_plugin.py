"""The management node's side: the security-group APIs, the two default-policy global
configs, and when a host gets its state.

A host gets its whole state (:func:`zsl_securitygroup.state.host_state`) in one
``/securitygroup/apply``:

* after every change through the API, before the API replies (every host where some
  group's NIC is enforced, before or after the change: remote groups make one group's
  membership part of another's rules);
* before a VM's domain starts (``pre_instantiate_vm_resource``: the tap is named by the
  core, so its chains exist before the tap does), and when its resources are released
  (stop, destroy: its chains go);
* when a host connects (a flow inserted at the end of ``hostConnect``), once any group
  exists;
* when a default policy changes.

A change is saved first; a Connected host that cannot take it fails the API naming the
host (the change stays saved, and the host gets it again when it reconnects).  Hosts not
Connected are skipped: their connect brings them up to date.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.config.spi import (
    GlobalConfigDef,
    GlobalConfigProvider,
    GlobalConfigUpdateExtensionPoint,
    global_config_value,
)
from core.host.models import HostVO
from core.host.spi import agent_of
from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.errors import OperationError, argerr, not_found, operr
from core.kernel.extensions import Plugin
from core.kernel.flow import NoRollbackFlow
from core.kernel.service import Service, handles
from core.network.l3.models import L3NetworkVO, VmNicVO
from core.vm.extension_points import PreVmInstantiateResourceExtensionPoint, VmInstanceSpec
from zsl_securitygroup.api import (
    AddSecurityGroupRule,
    AddVmNicToSecurityGroup,
    AttachSecurityGroupToL3Network,
    CreateSecurityGroup,
    DeleteSecurityGroup,
    DeleteSecurityGroupRule,
    DeleteVmNicFromSecurityGroup,
    DetachSecurityGroupFromL3Network,
    QuerySecurityGroup,
    QuerySecurityGroupRule,
    QueryVmNicInSecurityGroup,
)
from zsl_securitygroup.models import (
    SecurityGroupL3NetworkRefVO,
    SecurityGroupRuleVO,
    SecurityGroupVO,
    VmNicSecurityGroupRefVO,
)
from zsl_securitygroup.state import (
    Placement,
    Policies,
    host_state,
    hosts_with_members,
    vm_host,
)

log = logging.getLogger(__name__)

CATEGORY = "securityGroup"
POLICIES = ("accept", "drop")
INGRESS_POLICY = GlobalConfigDef(
    CATEGORY,
    "ingress.defaultPolicy",
    "what a NIC in a security group receives when no Ingress rule of its groups admits it",
    default="drop",
    valid_values=POLICIES,
)
EGRESS_POLICY = GlobalConfigDef(
    CATEGORY,
    "egress.defaultPolicy",
    "what a NIC in a security group may send when no Egress rule of its groups admits it",
    default="accept",
    valid_values=POLICIES,
)
HOST_CONNECT_CHAIN = "hostConnect"


class SecurityGroupPlugin(
    Plugin,
    Service,
    GlobalConfigProvider,
    GlobalConfigUpdateExtensionPoint,
    PreVmInstantiateResourceExtensionPoint,
    FlowChainContributor,
):
    implements = (
        Service,
        GlobalConfigProvider,
        GlobalConfigUpdateExtensionPoint,
        PreVmInstantiateResourceExtensionPoint,
        FlowChainContributor,
    )
    service_id = "securityGroup"
    queries = (QuerySecurityGroup, QuerySecurityGroupRule, QueryVmNicInSecurityGroup)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self._apply_lock = asyncio.Lock()
        """One state computed and sent at a time: the last state a host gets is the newest."""

    # -- extension points ---------------------------------------------------------------
    def global_configs(self) -> list[GlobalConfigDef]:
        return [INGRESS_POLICY, EGRESS_POLICY]

    async def after_update_global_config(
        self, definition: GlobalConfigDef, old_value: str, new_value: str
    ) -> None:
        if definition in (INGRESS_POLICY, EGRESS_POLICY):
            await self.apply(await self.node.db.run(hosts_with_members))

    def flow_insertions(self) -> list[FlowInsertion]:
        flow = SecurityGroupOnHostConnectFlow
        return [FlowInsertion(HOST_CONNECT_CHAIN, f"{flow.__module__}.{flow.__qualname__}")]

    async def pre_before_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None:
        pass

    async def pre_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None:
        """The VM's NICs in groups get their chains on the host it starts on."""
        if spec.dest_host_uuid is None or not await self._in_groups(spec.vm_uuid):
            return
        await self.apply_placed(Placement(spec.vm_uuid, spec.dest_host_uuid), failing=True)

    async def pre_release_vm_resource(self, spec: VmInstanceSpec) -> None:
        """The VM's chains go (and its addresses leave the remote groups' sets)."""
        if not await self._in_groups(spec.vm_uuid):
            return
        await self.apply_placed(Placement(spec.vm_uuid, None), failing=False)

    async def _in_groups(self, vm_uuid: str) -> bool:
        def check(session: Session) -> bool:
            ref = session.scalars(
                select(VmNicSecurityGroupRefVO.uuid).where(
                    VmNicSecurityGroupRefVO.vm_instance_uuid == vm_uuid
                )
            ).first()
            return ref is not None

        return bool(await self.node.db.run(check))

    async def apply_placed(self, placement: Placement, *, failing: bool) -> None:
        """Every host with group NICs, with ``placement`` (a VM starting or released) taken
        into account, the VM's own host first.  With ``failing``, the VM's own host not
        taking its state fails the caller (the VM's start); other hosts' failures are
        logged (each gets its state again when it reconnects)."""

        def hosts(session: Session) -> tuple[str | None, list[str]]:
            found = hosts_with_members(session, [placement])
            own = placement.host_uuid or vm_host(session, placement.vm_uuid)
            if own is not None:
                found.add(own)
            return own, sorted(found, key=lambda h: h != own)

        own, host_uuids = await self.node.db.run(hosts)
        failed = await self.send_states(host_uuids, placements=[placement])
        if failing and own in failed:
            raise operr(
                f"host {failed[own][0]} cannot guard the VM's NICs with their security "
                f"groups: {failed[own][1]}"
            )

    # -- applying ---------------------------------------------------------------------------
    def policies(self) -> Policies:
        return Policies(
            ingress=global_config_value(self.node, INGRESS_POLICY),
            egress=global_config_value(self.node, EGRESS_POLICY),
        )

    async def send_states(
        self,
        host_uuids: Iterable[str],
        *,
        placements: Iterable[Placement] = (),
        connecting: str | None = None,
    ) -> dict[str, tuple[str, str]]:
        """Send each Connected host of ``host_uuids`` (and ``connecting``, whatever its
        status) its whole state; host uuid -> (its name, the error) of those that failed."""
        placements, policies = list(placements), self.policies()
        failed: dict[str, tuple[str, str]] = {}
        async with self._apply_lock:
            for host_uuid in host_uuids:

                def compute(session: Session, host_uuid: str = host_uuid) -> Any:
                    host = session.get(HostVO, host_uuid)
                    if host is None or (host.status != "Connected" and host_uuid != connecting):
                        return None
                    return host.name, host_state(session, host_uuid, policies, placements)

                found = await self.node.db.run(compute)
                if found is None:
                    continue
                name, cmd = found
                try:
                    await (await agent_of(self.node, host_uuid)).send(cmd)
                except OperationError as exc:
                    log.warning("host %s did not take its security groups: %s", name, exc)
                    failed[host_uuid] = (name, exc.error.description)
        return failed

    async def apply(self, host_uuids: Iterable[str]) -> None:
        """Send each host its whole state; raise naming the hosts that failed."""
        failed = await self.send_states(host_uuids)
        if failed:
            which = "; ".join(f"{name}: {error}" for name, error in failed.values())
            raise operr(
                "the security groups are saved, but these hosts did not take them (each gets "
                f"them again when it reconnects): {which}"
            )

    async def apply_host_connect(self, host_uuid: str) -> None:
        """A connecting host gets its state, once any group exists (an empty state removes
        the lab's tables left from before)."""

        def any_group(session: Session) -> bool:
            return session.scalars(select(SecurityGroupVO.uuid)).first() is not None

        if not await self.node.db.run(any_group):
            return
        failed = await self.send_states([host_uuid], connecting=host_uuid)
        for name, error in failed.values():
            raise operr(
                f"host {name} cannot enforce its security groups (is the securitygroup plugin "
                f"installed beside its agent?): {error}"
            )

    async def _changed(self, change: Any) -> Any:
        """Run ``change(session)`` and apply the result to every host holding a group NIC
        before or after it."""
        before = await self.node.db.run(hosts_with_members)
        result = await self.node.db.run(change)
        after = await self.node.db.run(hosts_with_members)
        await self.apply(sorted(before | after))
        return result

    # -- groups -----------------------------------------------------------------------------------
    @handles(CreateSecurityGroup)
    async def create(self, msg: CreateSecurityGroup) -> dict[str, Any]:
        def create(session: Session) -> dict[str, Any]:
            group = SecurityGroupVO(
                name=msg.name, description=msg.description or None, ip_version=msg.ip_version
            )
            session.add(group)
            session.flush()
            return group.to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteSecurityGroup)
    async def delete(self, msg: DeleteSecurityGroup) -> None:
        def delete_group(session: Session) -> None:
            group = _group(session, msg.uuid)
            # Rows the database would cascade, removed here so the ORM's view agrees.
            for model, column in (
                (SecurityGroupRuleVO, SecurityGroupRuleVO.remote_security_group_uuid),
                (SecurityGroupRuleVO, SecurityGroupRuleVO.security_group_uuid),
                (VmNicSecurityGroupRefVO, VmNicSecurityGroupRefVO.security_group_uuid),
                (SecurityGroupL3NetworkRefVO, SecurityGroupL3NetworkRefVO.security_group_uuid),
            ):
                session.execute(delete(model).where(column == group.uuid))
            session.delete(group)

        await self._changed(delete_group)

    # -- rules ------------------------------------------------------------------------------------
    @handles(AddSecurityGroupRule)
    async def add_rule(self, msg: AddSecurityGroupRule) -> dict[str, Any]:
        start, end = check_ports(msg.protocol, msg.start_port, msg.end_port)
        cidr = check_cidr(msg.allowed_cidr) if msg.allowed_cidr else None
        if cidr and msg.remote_security_group_uuid:
            raise argerr(
                "a rule names its peer by allowedCidr or by remoteSecurityGroupUuid, not both "
                f"(got {msg.allowed_cidr} and {msg.remote_security_group_uuid})"
            )

        def add(session: Session) -> dict[str, Any]:
            group = _group(session, msg.security_group_uuid)
            remote = msg.remote_security_group_uuid or None
            same = session.scalars(
                select(SecurityGroupRuleVO).where(
                    SecurityGroupRuleVO.security_group_uuid == group.uuid,
                    SecurityGroupRuleVO.type == msg.type,
                    SecurityGroupRuleVO.protocol == msg.protocol,
                    SecurityGroupRuleVO.start_port == start,
                    SecurityGroupRuleVO.end_port == end,
                    SecurityGroupRuleVO.allowed_cidr.is_(None)
                    if cidr is None
                    else SecurityGroupRuleVO.allowed_cidr == cidr,
                    SecurityGroupRuleVO.remote_security_group_uuid.is_(None)
                    if remote is None
                    else SecurityGroupRuleVO.remote_security_group_uuid == remote,
                )
            ).first()
            if same is not None:
                raise argerr(f"security group {group.name} has this rule already ({same.uuid})")
            rule = SecurityGroupRuleVO(
                security_group_uuid=group.uuid,
                type=msg.type,
                protocol=msg.protocol,
                start_port=start,
                end_port=end,
                allowed_cidr=cidr,
                remote_security_group_uuid=remote,
            )
            session.add(rule)
            session.flush()
            return rule.to_inventory()

        return await self._changed(add)  # type: ignore[no-any-return]

    @handles(DeleteSecurityGroupRule)
    async def delete_rules(self, msg: DeleteSecurityGroupRule) -> None:
        def remove(session: Session) -> None:
            rules = list(
                session.scalars(
                    select(SecurityGroupRuleVO).where(SecurityGroupRuleVO.uuid.in_(msg.rule_uuids))
                )
            )
            missing = sorted(set(msg.rule_uuids) - {r.uuid for r in rules})
            if missing:
                raise argerr(f"no security group rule has the uuid(s) {', '.join(missing)}")
            for rule in rules:
                session.delete(rule)

        await self._changed(remove)

    # -- NICs -------------------------------------------------------------------------------
    @handles(AddVmNicToSecurityGroup)
    async def add_nics(self, msg: AddVmNicToSecurityGroup) -> list[dict[str, Any]]:
        def add(session: Session) -> list[dict[str, Any]]:
            group = _group(session, msg.security_group_uuid)
            attached = set(
                session.scalars(
                    select(SecurityGroupL3NetworkRefVO.l3_network_uuid).where(
                        SecurityGroupL3NetworkRefVO.security_group_uuid == group.uuid
                    )
                )
            )
            refs = []
            for nic in _nics(session, msg.vm_nic_uuids):
                if nic.type != "VNIC":
                    raise argerr(f"NIC {nic.uuid} is an appliance's, not a VM's")
                if nic.l3_network_uuid not in attached:
                    l3 = session.get(L3NetworkVO, nic.l3_network_uuid)
                    raise argerr(
                        f"security group {group.name} is not attached to L3 network "
                        f"{l3.name if l3 else nic.l3_network_uuid} of NIC {nic.uuid}; "
                        "attach it first (AttachSecurityGroupToL3Network)"
                    )
                if not nic.ip:
                    raise argerr(f"NIC {nic.uuid} has no IP address to guard")
                ref = session.scalars(
                    select(VmNicSecurityGroupRefVO).where(
                        VmNicSecurityGroupRefVO.vm_nic_uuid == nic.uuid,
                        VmNicSecurityGroupRefVO.security_group_uuid == group.uuid,
                    )
                ).first()
                if ref is None:
                    ref = VmNicSecurityGroupRefVO(
                        vm_nic_uuid=nic.uuid,
                        security_group_uuid=group.uuid,
                        vm_instance_uuid=nic.vm_instance_uuid,
                    )
                    session.add(ref)
                    session.flush()
                refs.append(ref.to_inventory())
            return refs

        return await self._changed(add)  # type: ignore[no-any-return]

    @handles(DeleteVmNicFromSecurityGroup)
    async def delete_nics(self, msg: DeleteVmNicFromSecurityGroup) -> None:
        def remove(session: Session) -> None:
            group = _group(session, msg.security_group_uuid)
            refs = list(
                session.scalars(
                    select(VmNicSecurityGroupRefVO).where(
                        VmNicSecurityGroupRefVO.security_group_uuid == group.uuid,
                        VmNicSecurityGroupRefVO.vm_nic_uuid.in_(msg.vm_nic_uuids),
                    )
                )
            )
            missing = sorted(set(msg.vm_nic_uuids) - {r.vm_nic_uuid for r in refs})
            if missing:
                raise argerr(f"NIC(s) {', '.join(missing)} are not in security group {group.name}")
            for ref in refs:
                session.delete(ref)

        await self._changed(remove)

    # -- L3 networks -------------------------------------------------------------------------------
    @handles(AttachSecurityGroupToL3Network)
    async def attach(self, msg: AttachSecurityGroupToL3Network) -> dict[str, Any]:
        def attach(session: Session) -> dict[str, Any]:
            group = _group(session, msg.security_group_uuid)
            l3 = session.get(L3NetworkVO, msg.l3_network_uuid)
            if l3 is None:
                raise not_found(L3NetworkVO.resource_type, msg.l3_network_uuid)
            if l3.category != "Private":
                raise argerr(
                    f"L3 network {l3.name} is a {l3.category} network; security groups guard "
                    "guests on Private networks"
                )
            ref = _l3_ref(session, group.uuid, l3.uuid)
            if ref is not None:
                raise argerr(f"security group {group.name} is attached to {l3.name} already")
            session.add(SecurityGroupL3NetworkRefVO(security_group_uuid=group.uuid,
                                                    l3_network_uuid=l3.uuid))  # fmt: skip
            return group.to_inventory()

        return await self.node.db.run(attach)

    @handles(DetachSecurityGroupFromL3Network)
    async def detach(self, msg: DetachSecurityGroupFromL3Network) -> dict[str, Any]:
        """The group's NICs on the network leave it."""

        def detach(session: Session) -> dict[str, Any]:
            group = _group(session, msg.security_group_uuid)
            ref = _l3_ref(session, group.uuid, msg.l3_network_uuid)
            if ref is None:
                raise argerr(
                    f"security group {group.name} is not attached to L3 network "
                    f"{msg.l3_network_uuid}"
                )
            on_l3 = select(VmNicVO.uuid).where(VmNicVO.l3_network_uuid == msg.l3_network_uuid)
            session.execute(
                delete(VmNicSecurityGroupRefVO).where(
                    VmNicSecurityGroupRefVO.security_group_uuid == group.uuid,
                    VmNicSecurityGroupRefVO.vm_nic_uuid.in_(on_l3),
                )
            )
            session.delete(ref)
            return group.to_inventory()

        return await self._changed(detach)  # type: ignore[no-any-return]


class SecurityGroupOnHostConnectFlow(NoRollbackFlow):
    """A connecting host gets its security-group state anew (tables removed by hand while
    it was away come back; those of NICs gone meanwhile go)."""

    async def run(self, data: Any) -> None:
        await data.node.plugin(SecurityGroupPlugin).apply_host_connect(data.host_uuid)


# -- checks ---------------------------------------------------------------------------------------
def check_ports(protocol: str, start: int, end: int) -> tuple[int, int]:
    """(start, end) as stored: -1, -1 for no ports (ICMP, ALL, or every TCP/UDP port)."""
    if protocol in ("ICMP", "ALL"):
        if (start, end) != (-1, -1):
            raise argerr(f"protocol {protocol} has no ports (got startPort={start}, endPort={end})")
        return -1, -1
    if (start, end) == (-1, -1):
        return -1, -1
    if start < 1 or end < 1 or start > end:
        raise argerr(
            f"port range {start}-{end} of protocol {protocol} is not valid: both in [1, 65535], "
            "startPort <= endPort (or neither given: every port)"
        )
    return start, end


def check_cidr(text: str) -> str:
    try:
        network = ipaddress.IPv4Network(text.strip(), strict=True)
    except ValueError as exc:
        raise argerr(
            f"allowedCidr {text!r} is not an IPv4 CIDR like 10.0.10.0/24 ({exc})"
        ) from None
    return str(network)


def _group(session: Session, uuid: str) -> SecurityGroupVO:
    group = session.get(SecurityGroupVO, uuid)
    if group is None:
        raise not_found(SecurityGroupVO.resource_type, uuid)
    return group


def _l3_ref(session: Session, group_uuid: str, l3_uuid: str) -> SecurityGroupL3NetworkRefVO | None:
    return session.scalars(
        select(SecurityGroupL3NetworkRefVO).where(
            SecurityGroupL3NetworkRefVO.security_group_uuid == group_uuid,
            SecurityGroupL3NetworkRefVO.l3_network_uuid == l3_uuid,
        )
    ).first()


def _nics(session: Session, uuids: list[str]) -> list[VmNicVO]:
    nics = {n.uuid: n for n in session.scalars(select(VmNicVO).where(VmNicVO.uuid.in_(uuids)))}
    missing = [u for u in uuids if u not in nics]
    if missing:
        raise not_found(VmNicVO.resource_type, missing[0])
    return [nics[u] for u in dict.fromkeys(uuids)]
