"""The management node's side: VIPs on public networks, port-forwarding rules and EIPs
(ZStack's vip, portforwarding and eip services), applied by the virtual router.

``PortForwarding`` and ``Eip`` are service types this plugin adds to the ``VirtualRouter``
provider; a guest network that gets them can have its NICs reached through VIPs of the
public network its router has an address on.  Changes to one router hold the router's
own lock, so they never interleave with its creation, reconnect or DHCP changes.
"""

from __future__ import annotations

import contextlib
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.db import new_uuid
from core.kernel.errors import argerr, not_found, operr
from core.kernel.extensions import Plugin
from core.kernel.flow import NoRollbackFlow
from core.kernel.service import Service, handles
from core.network.l3.extension_points import L3NetworkDeletionExtensionPoint
from core.network.l3.models import L3NetworkVO, VmNicVO
from core.network.l3.spi import allocate_ip, release_ip
from core.network.service.extension_points import NetworkServiceTypeExtensionPoint
from core.virtual_router.extension_points import (
    POST_CREATE_CHAIN,
    SYNC_SNAT_FLOW,
    VIRTUAL_ROUTER,
)
from zsl_vip import flows
from zsl_vip.api import (
    AttachEip,
    AttachPortForwardingRule,
    CreateEip,
    CreatePortForwardingRule,
    CreateVip,
    DeleteEip,
    DeletePortForwardingRule,
    DeleteVip,
    DetachEip,
    DetachPortForwardingRule,
    QueryEip,
    QueryPortForwardingRule,
    QueryVip,
)
from zsl_vip.flows import Kind, VipUserData, access_of, delete_row, insert_row, row_of
from zsl_vip.models import EipVO, PortForwardingRuleVO, VipVO
from zsl_vip.state import EIP, PORT_FORWARDING
from zsl_vip.validation import (
    allowed_cidr,
    check_eip_attach,
    check_rule_attach,
    guest_nic,
    ports,
)

VM_EXPUNGE_NIC_FLOW = "core.vm.lifecycle_flows.VmExpungeNicFlow"


class VipPlugin(
    Plugin,
    Service,
    NetworkServiceTypeExtensionPoint,
    FlowChainContributor,
    L3NetworkDeletionExtensionPoint,
):
    implements = (
        Service,
        NetworkServiceTypeExtensionPoint,
        FlowChainContributor,
        L3NetworkDeletionExtensionPoint,
    )
    service_id = "vip"
    queries = (QueryVip, QueryPortForwardingRule, QueryEip)
    provider_type = VIRTUAL_ROUTER
    service_types = (PORT_FORWARDING, EIP)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        node.declare_chain(flows.CREATE_PF, flows.CREATE, VipUserData)
        node.declare_chain(flows.CREATE_EIP, flows.CREATE, VipUserData)
        node.declare_chain(flows.ATTACH_PF, flows.ATTACH, VipUserData)
        node.declare_chain(flows.ATTACH_EIP, flows.ATTACH, VipUserData)
        node.declare_chain(flows.DETACH_PF, flows.DETACH, VipUserData, resumable=True)
        node.declare_chain(flows.DETACH_EIP, flows.DETACH, VipUserData, resumable=True)

    def flow_insertions(self) -> list[FlowInsertion]:
        after = [SYNC_SNAT_FLOW, *flows.POST_CREATE[:-1]]
        return [
            *(
                FlowInsertion(POST_CREATE_CHAIN, flow, after=previous)
                for flow, previous in zip(flows.POST_CREATE, after, strict=True)
            ),
            FlowInsertion(
                "expungeVm", flows.paths(VmDetachVipUsersFlow)[0], before=VM_EXPUNGE_NIC_FLOW
            ),
        ]

    # -- VIPs --------------------------------------------------------------------------
    @handles(CreateVip)
    async def create_vip(self, msg: CreateVip) -> dict[str, Any]:
        def create(session: Session) -> dict[str, Any]:
            l3 = session.get(L3NetworkVO, msg.l3_network_uuid)
            assert l3 is not None  # checked by the bus
            if l3.category != "Public":
                raise argerr(
                    f"l3NetworkUuid: a VIP is an address of a public network; {l3.name} is "
                    f"{l3.category}"
                )
            used = allocate_ip(session, l3.uuid, "Vip", msg.required_ip or None)
            row = VipVO(
                name=msg.name,
                description=msg.description,
                l3_network_uuid=l3.uuid,
                used_ip_uuid=used["uuid"],
                ip=used["ip"],
                netmask=used["netmask"],
                gateway=used["gateway"],
            )
            session.add(row)
            session.flush()
            return row.to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteVip)
    async def delete_vip(self, msg: DeleteVip) -> None:
        def delete(session: Session) -> None:
            vip = session.get(VipVO, msg.uuid)
            if vip is None:
                return
            users = [
                *session.scalars(
                    select(PortForwardingRuleVO.name).where(
                        PortForwardingRuleVO.vip_uuid == vip.uuid
                    )
                ),
                *session.scalars(select(EipVO.name).where(EipVO.vip_uuid == vip.uuid)),
            ]
            if users:
                raise operr(
                    f"VIP {vip.name} ({vip.ip}) is used by {', '.join(users)}; delete them first"
                )
            used_ip = vip.used_ip_uuid
            session.delete(vip)
            session.flush()
            release_ip(session, used_ip)

        await self.node.db.run(delete)

    # -- port forwarding ---------------------------------------------------------------
    @handles(CreatePortForwardingRule)
    async def create_rule(self, msg: CreatePortForwardingRule) -> dict[str, Any]:
        p = ports(
            msg.vip_port_start, msg.vip_port_end, msg.private_port_start, msg.private_port_end
        )
        fields = {
            "name": msg.name,
            "description": msg.description,
            "vip_uuid": msg.vip_uuid,
            "vip_port_start": p.vip_start,
            "vip_port_end": p.vip_end,
            "private_port_start": p.private_start,
            "private_port_end": p.private_end,
            "protocol_type": msg.protocol_type,
            "allowed_cidr": allowed_cidr(msg.allowed_cidr),
        }
        return await self._create(PORT_FORWARDING, fields, msg.vm_nic_uuid or None)

    @handles(AttachPortForwardingRule)
    async def attach_rule(self, msg: AttachPortForwardingRule) -> dict[str, Any]:
        await self._attach(PORT_FORWARDING, msg.rule_uuid, msg.vm_nic_uuid)
        return await self._inventory(PORT_FORWARDING, msg.rule_uuid)

    @handles(DetachPortForwardingRule)
    async def detach_rule(self, msg: DetachPortForwardingRule) -> dict[str, Any]:
        await self._detach(PORT_FORWARDING, msg.uuid, must_be_attached=True)
        return await self._inventory(PORT_FORWARDING, msg.uuid)

    @handles(DeletePortForwardingRule)
    async def delete_rule(self, msg: DeletePortForwardingRule) -> None:
        await self._detach(PORT_FORWARDING, msg.uuid, must_be_attached=False)
        await self.node.db.run(lambda s: delete_row(s, PORT_FORWARDING, msg.uuid))

    # -- EIPs --------------------------------------------------------------------------
    @handles(CreateEip)
    async def create_eip(self, msg: CreateEip) -> dict[str, Any]:
        fields = {"name": msg.name, "description": msg.description, "vip_uuid": msg.vip_uuid}
        return await self._create(EIP, fields, msg.vm_nic_uuid or None)

    @handles(AttachEip)
    async def attach_eip(self, msg: AttachEip) -> dict[str, Any]:
        await self._attach(EIP, msg.eip_uuid, msg.vm_nic_uuid)
        return await self._inventory(EIP, msg.eip_uuid)

    @handles(DetachEip)
    async def detach_eip(self, msg: DetachEip) -> dict[str, Any]:
        await self._detach(EIP, msg.uuid, must_be_attached=True)
        return await self._inventory(EIP, msg.uuid)

    @handles(DeleteEip)
    async def delete_eip(self, msg: DeleteEip) -> None:
        await self._detach(EIP, msg.uuid, must_be_attached=False)
        await self.node.db.run(lambda s: delete_row(s, EIP, msg.uuid))

    # -- create, attach and detach -----------------------------------------------------
    async def _create(
        self, kind: Kind, fields: dict[str, Any], nic_uuid: str | None
    ) -> dict[str, Any]:
        """A new rule or EIP; with a NIC, made and attached by one chain (``create…``)."""
        uuid, access = new_uuid(), access_of(self.node)
        if nic_uuid is None:
            await self.node.db.run(lambda s: insert_row(s, access, kind, uuid, fields, None))
        else:
            # Checked first in a transaction that is thrown away, so that a refusal is the
            # rule's own error, not a failed chain's (the chain's first flow checks again).
            def dry_run(session: Session) -> None:
                insert_row(session, access, kind, uuid, fields, nic_uuid)
                raise _Refusable

            with contextlib.suppress(_Refusable):
                await self.node.db.run(dry_run)
            await self._attach(kind, uuid, nic_uuid, new_row=fields)
        return await self._inventory(kind, uuid)

    async def _attach(
        self, kind: Kind, uuid: str, nic_uuid: str, new_row: dict[str, Any] | None = None
    ) -> None:
        """Attach a rule or EIP to a NIC (``attach…``), or make it attached (``create…``,
        with the columns of the ``new_row``), under the lock of the NIC's router."""
        access = access_of(self.node)
        guest_l3 = await self.node.db.run(lambda s: guest_nic(s, nic_uuid).l3_network_uuid)
        async with access.locked(guest_l3):

            def check(session: Session) -> str:
                nic = guest_nic(session, nic_uuid)
                row = _get(session, kind, uuid)
                if isinstance(row, EipVO):
                    check_eip_attach(session, access, row, nic)
                else:
                    check_rule_attach(session, access, row, nic)
                return row.vip_uuid

            if new_row is None:
                vip_uuid = await self.node.db.run(check)
                chain = flows.ATTACH_EIP if kind == EIP else flows.ATTACH_PF
            else:
                vip_uuid = new_row["vip_uuid"]
                chain = flows.CREATE_EIP if kind == EIP else flows.CREATE_PF
            data = VipUserData(
                kind=kind,
                uuid=uuid,
                vip_uuid=vip_uuid,
                nic_uuid=nic_uuid,
                guest_l3=guest_l3,
                new_row=new_row,
            )
            outcome = await self.node.chain(chain).start(data.bind(self.node))  # type: ignore[arg-type]
            outcome.raise_for_error(
                f"cannot {'attach' if new_row is None else 'create'} {_what(kind)} {uuid}"
            )

    async def _detach(self, kind: Kind, uuid: str, *, must_be_attached: bool) -> None:
        def read(session: Session) -> VipUserData | None:
            row = _get(session, kind, uuid)
            if row.vm_nic_uuid is None:
                if must_be_attached:
                    raise operr(f"{_what(kind)} {row.name} is not attached")
                return None
            nic = session.get(VmNicVO, row.vm_nic_uuid)
            assert nic is not None  # a NIC's deletion detaches it (SET NULL)
            return VipUserData(
                kind=kind,
                uuid=uuid,
                vip_uuid=row.vip_uuid,
                nic_uuid=nic.uuid,
                guest_l3=nic.l3_network_uuid,
            )

        data = await self.node.db.run(read)
        if data is None:
            return
        async with access_of(self.node).locked(data.guest_l3):
            chain = flows.DETACH_EIP if kind == EIP else flows.DETACH_PF
            outcome = await self.node.chain(chain).start(data.bind(self.node))  # type: ignore[arg-type]
            outcome.raise_for_error(f"cannot detach {_what(kind)} {uuid}")

    async def detach_nics_of(self, vm_uuid: str) -> None:
        """A VM's NICs are going: its rules and EIPs are detached (kept, for another NIC)."""

        def read(session: Session) -> list[tuple[Kind, str]]:
            nics = select(VmNicVO.uuid).where(VmNicVO.vm_instance_uuid == vm_uuid)
            rules = session.scalars(
                select(PortForwardingRuleVO.uuid).where(PortForwardingRuleVO.vm_nic_uuid.in_(nics))
            )
            eips = session.scalars(select(EipVO.uuid).where(EipVO.vm_nic_uuid.in_(nics)))
            found: list[tuple[Kind, str]] = [(PORT_FORWARDING, u) for u in rules]
            return found + [(EIP, u) for u in eips]

        for kind, uuid in await self.node.db.run(read):
            await self._detach(kind, uuid, must_be_attached=False)

    async def _inventory(self, kind: Kind, uuid: str) -> dict[str, Any]:
        return await self.node.db.run(lambda s: _get(s, kind, uuid).to_inventory())

    # -- L3 deletion -------------------------------------------------------------------
    async def before_delete_l3_network(self, l3: dict[str, Any]) -> None:
        vips = await self.node.db.run(
            lambda s: list(s.scalars(select(VipVO.ip).where(VipVO.l3_network_uuid == l3["uuid"])))
        )
        if vips:
            raise operr(
                f"L3 network {l3['name']} holds VIP(s) {', '.join(vips)}; delete them first"
            )


class VmDetachVipUsersFlow(NoRollbackFlow):
    """Expunge, before the NICs go: their port forwarding and EIPs are detached."""

    async def run(self, data: Any) -> None:
        await data.node.plugin(VipPlugin).detach_nics_of(data.vm["uuid"])


class _Refusable(Exception):
    """Raised to throw a checking transaction away."""


def _what(kind: Kind) -> str:
    return "EIP" if kind == EIP else "port forwarding rule"


def _get(session: Session, kind: Kind, uuid: str) -> PortForwardingRuleVO | EipVO:
    row = row_of(session, kind, uuid)
    if row is None:
        raise not_found(EipVO.resource_type if kind == EIP else "PortForwardingRuleVO", uuid)
    return row
