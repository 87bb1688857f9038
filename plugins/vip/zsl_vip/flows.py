"""The chains that attach and detach port forwarding and EIPs, and the flows the plugin
inserts into the router's post-create chain (ZStack's VirtualRouterSyncVipForNewCreateFlow,
VirtualRouterSyncPortForwardingRulesOnStartFlow, VirtualRouterSyncEipOnStartFlow).

Attach (durable; rolled back after a crash): the VIP is marked as serving the guest
network, the router gets the VIP and the rule or EIP, and only then is the NIC written on
the row, so a rollback from any step leaves neither row change nor router state behind.
Create with a NIC is the same chain after a first flow that writes the row (its uuid is
chosen before the chain, so a rollback after a crash finds and deletes it).
Detach (resumable): the router drops the rule or EIP (and a VIP nothing else uses), then
the row forgets the NIC.  A router that does not exist or is not connected is skipped: its
post-create flows replay the database when it is made or reconnects.
"""

from __future__ import annotations

import logging
from typing import Any, Literal

from sqlalchemy.orm import Session

from core.kernel.errors import not_found, operr
from core.kernel.flow import Flow, NoRollbackFlow
from core.kernel.flow_data import FlowData
from core.kernel.http import UnreachableError
from core.kernel.rest import AgentClient
from core.network.l3.models import VmNicVO
from core.virtual_router.extension_points import PUBLIC, RouterData, VirtualRouterAccess
from core.virtual_router.spi import router_access
from zsl_vip.contract import (
    ApplyEipCmd,
    ApplyPortForwardingCmd,
    RevokeEipCmd,
    RevokePortForwardingCmd,
    SyncEipCmd,
    SyncPortForwardingCmd,
    SyncVipCmd,
)
from zsl_vip.models import EipVO, PortForwardingRuleVO, VipVO
from zsl_vip.state import EIP, eip_to, refresh_vip, router_eips, router_rules, router_vips, rule_to
from zsl_vip.validation import (
    Ports,
    check_eip_attach,
    check_new_rule,
    check_rule_attach,
    guest_nic,
)

log = logging.getLogger(__name__)
Kind = Literal["PortForwarding", "Eip"]
ATTACH_PF, DETACH_PF = "attachPortForwardingRule", "detachPortForwardingRule"
ATTACH_EIP, DETACH_EIP = "attachEip", "detachEip"
CREATE_PF, CREATE_EIP = "createPortForwardingRule", "createEip"


def access_of(node: Any) -> VirtualRouterAccess:
    return router_access(node, "VIPs")


class VipUserData(FlowData):
    """A rule or EIP being attached to, or detached from, a NIC of ``guest_l3``."""

    kind: Kind
    uuid: str
    vip_uuid: str
    nic_uuid: str
    guest_l3: str
    new_row: dict[str, Any] | None = None
    """Create chains: the columns of the rule or EIP the first flow makes (by ``uuid``)."""


def row_of(session: Session, kind: Kind, uuid: str) -> PortForwardingRuleVO | EipVO | None:
    """The rule or EIP, or None if it is gone."""
    if kind == EIP:
        return session.get(EipVO, uuid)
    return session.get(PortForwardingRuleVO, uuid)


async def _router(node: Any, guest_l3: str) -> tuple[AgentClient, str] | None:
    """The client and public MAC of the guest network's router, if it runs and is
    connected (otherwise its reconnect replays the database)."""
    access = access_of(node)

    def read(session: Session) -> tuple[dict[str, Any], str] | None:
        appliance = access.appliance_of(session, guest_l3)
        if appliance is None or (appliance["state"], appliance["status"]) != (
            "Running",
            "Connected",
        ):
            return None
        return appliance, access.router_nics(session, appliance["uuid"])[PUBLIC]["mac"]

    found = await node.db.run(read)
    if found is None:
        return None
    appliance, public_mac = found
    return access.client(appliance), public_mac


async def sync_vips(
    node: Any, client: AgentClient, public_mac: str, guest_l3: str, **which: Any
) -> None:
    vips = await node.db.run(lambda s: router_vips(s, guest_l3, **which))
    await client.send(SyncVipCmd(public_mac=public_mac, vips=vips))


async def revoke(node: Any, kind: Kind, uuid: str, guest_l3: str) -> None:
    """Take a rule or EIP (and its VIP, if nothing else uses it) out of the router.  A
    router whose agent cannot be reached is left alone: the ping tracker reconnects it,
    replaying the database (where the rule or EIP is detached by then)."""
    router = await _router(node, guest_l3)
    if router is None:
        return
    client, public_mac = router
    try:
        if kind == EIP:
            await client.send(RevokeEipCmd(uuids=[uuid]))
            await sync_vips(node, client, public_mac, guest_l3, exclude_eips=[uuid])
        else:
            await client.send(RevokePortForwardingCmd(uuids=[uuid]))
            await sync_vips(node, client, public_mac, guest_l3, exclude_rules=[uuid])
    except UnreachableError as exc:
        log.warning(
            "%s %s: the router of L3 %s does not answer (%s); its reconnect replays it",
            kind, uuid, guest_l3, exc.error.description,
        )  # fmt: skip


def forget_nic(session: Session, kind: Kind, uuid: str) -> None:
    """The row is detached: no NIC, no guest address; its VIP's use is updated."""
    row = row_of(session, kind, uuid)
    if row is not None:
        row.vm_nic_uuid = None
        row.guest_ip = None
        refresh_vip(session, row.vip_uuid)


def insert_row(
    session: Session,
    access: VirtualRouterAccess,
    kind: Kind,
    uuid: str,
    fields: dict[str, Any],
    nic_uuid: str | None,
) -> PortForwardingRuleVO | EipVO:
    """Write a new rule or EIP (checked against the others, and against the NIC it is
    to be attached to); a refusal raises and writes nothing."""
    vip = session.get(VipVO, fields["vip_uuid"])
    if vip is None:
        raise not_found(VipVO.resource_type, fields["vip_uuid"])
    row: PortForwardingRuleVO | EipVO
    if kind == EIP:
        if vip.use_for:
            raise operr(
                f"VIP {vip.name} ({vip.ip}) is used for {vip.use_for}; an EIP needs a VIP of "
                "its own"
            )
        row = EipVO(uuid=uuid, vip_ip=vip.ip, **fields)
    else:
        p = Ports(
            fields["vip_port_start"],
            fields["vip_port_end"],
            fields["private_port_start"],
            fields["private_port_end"],
        )
        check_new_rule(session, vip, p, fields["protocol_type"])
        row = PortForwardingRuleVO(uuid=uuid, vip_ip=vip.ip, **fields)
    session.add(row)
    session.flush()
    if nic_uuid is not None:
        nic = guest_nic(session, nic_uuid)
        if isinstance(row, EipVO):
            check_eip_attach(session, access, row, nic)
        else:
            check_rule_attach(session, access, row, nic)
    refresh_vip(session, vip.uuid)
    return row


def delete_row(session: Session, kind: Kind, uuid: str) -> None:
    """The rule or EIP is gone (no-op if it is); its VIP's use is updated."""
    row = row_of(session, kind, uuid)
    if row is not None:
        vip = row.vip_uuid
        session.delete(row)
        session.flush()
        refresh_vip(session, vip)


class VipUserRowFlow(Flow):
    """Create chains, first: the new rule or EIP's row (its uuid is in the journal before
    this runs, so a rollback, after a crash too, finds and deletes it)."""

    async def run(self, data: VipUserData) -> None:  # type: ignore[override]
        assert data.new_row is not None
        access, row = access_of(data.node), dict(data.new_row)
        await data.node.db.run(
            lambda s: insert_row(s, access, data.kind, data.uuid, row, data.nic_uuid)
        )

    async def rollback(self, data: VipUserData) -> None:  # type: ignore[override]
        await data.node.db.run(lambda s: delete_row(s, data.kind, data.uuid))


class VipAcquireFlow(Flow):
    """The VIP serves the guest network (so no other network's NIC can take it)."""

    async def run(self, data: VipUserData) -> None:  # type: ignore[override]
        def acquire(session: Session) -> None:
            vip = session.get(VipVO, data.vip_uuid)
            if vip is None:
                raise operr(f"VIP {data.vip_uuid} is gone")
            vip.peer_l3_network_uuid = data.guest_l3

        await data.node.db.run(acquire)

    async def rollback(self, data: VipUserData) -> None:  # type: ignore[override]
        await data.node.db.run(lambda s: refresh_vip(s, data.vip_uuid))


class VipApplyOnRouterFlow(Flow):
    """The router holds the VIP and the rule or EIP; the rollback takes them out again."""

    async def run(self, data: VipUserData) -> None:  # type: ignore[override]
        router = await _router(data.node, data.guest_l3)
        if router is None:
            return
        client, public_mac = router
        await sync_vips(data.node, client, public_mac, data.guest_l3, extra=[data.vip_uuid])

        def read(session: Session) -> ApplyEipCmd | ApplyPortForwardingCmd:
            nic = session.get(VmNicVO, data.nic_uuid)
            row = row_of(session, data.kind, data.uuid)
            if nic is None or nic.ip is None or row is None:
                raise operr(f"the NIC or the {data.kind} went away meanwhile")
            if isinstance(row, EipVO):
                return ApplyEipCmd(eips=[eip_to(row, nic.ip, public_mac)])
            return ApplyPortForwardingCmd(rules=[rule_to(row, nic.ip)])

        await client.send(await data.node.db.run(read))

    async def rollback(self, data: VipUserData) -> None:  # type: ignore[override]
        await revoke(data.node, data.kind, data.uuid, data.guest_l3)


class VipAttachedFlow(Flow):
    """Last: the row names the NIC and its address (a flow inserted after it can still
    fail: the rollback detaches the row again)."""

    async def run(self, data: VipUserData) -> None:  # type: ignore[override]
        def attach(session: Session) -> None:
            nic = session.get(VmNicVO, data.nic_uuid)
            row = row_of(session, data.kind, data.uuid)
            if nic is None or row is None:
                raise operr(f"the NIC or the {data.kind} went away meanwhile")
            row.vm_nic_uuid, row.guest_ip = nic.uuid, nic.ip
            refresh_vip(session, data.vip_uuid)

        await data.node.db.run(attach)

    async def rollback(self, data: VipUserData) -> None:  # type: ignore[override]
        await data.node.db.run(lambda s: forget_nic(s, data.kind, data.uuid))


class VipRevokeOnRouterFlow(NoRollbackFlow):
    async def run(self, data: VipUserData) -> None:  # type: ignore[override]
        await revoke(data.node, data.kind, data.uuid, data.guest_l3)


class VipDetachedFlow(NoRollbackFlow):
    async def run(self, data: VipUserData) -> None:  # type: ignore[override]
        await data.node.db.run(lambda s: forget_nic(s, data.kind, data.uuid))


# -- the router's post-create chain -------------------------------------------------------
def _public_mac(data: RouterData, session: Session) -> str:
    nics = access_of(data.node).router_nics(session, data.appliance["uuid"])
    return str(nics[PUBLIC]["mac"])


class VirtualRouterSyncVipForNewCreateFlow(NoRollbackFlow):
    """Every VIP the router holds, as /32 addresses of its public interface."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        def read(session: Session) -> SyncVipCmd:
            return SyncVipCmd(
                public_mac=_public_mac(data, session), vips=router_vips(session, data.guest_l3)
            )

        await data.client().send(await data.node.db.run(read))


class VirtualRouterSyncPortForwardingRulesOnStartFlow(NoRollbackFlow):
    """Every port-forwarding rule attached to a NIC of the guest network, in one table."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        rules = await data.node.db.run(lambda s: router_rules(s, data.guest_l3))
        await data.client().send(SyncPortForwardingCmd(rules=rules), timeout=60)


class VirtualRouterSyncEipOnStartFlow(NoRollbackFlow):
    """Every EIP attached to a NIC of the guest network."""

    async def run(self, data: RouterData) -> None:  # type: ignore[override]
        def read(session: Session) -> SyncEipCmd:
            mac = _public_mac(data, session)
            return SyncEipCmd(eips=router_eips(session, data.guest_l3, mac))

        await data.client().send(await data.node.db.run(read), timeout=60)


def paths(*classes: type) -> list[str]:
    return [f"{cls.__module__}.{cls.__name__}" for cls in classes]


ATTACH = paths(VipAcquireFlow, VipApplyOnRouterFlow, VipAttachedFlow)
CREATE = [*paths(VipUserRowFlow), *ATTACH]
DETACH = paths(VipRevokeOnRouterFlow, VipDetachedFlow)
POST_CREATE = paths(
    VirtualRouterSyncVipForNewCreateFlow,
    VirtualRouterSyncPortForwardingRulesOnStartFlow,
    VirtualRouterSyncEipOnStartFlow,
)
