"""The virtual router: a network service provider (DHCP, DNS, SNAT) whose appliances
are made on demand, one per guest L3 network, the first time a VM there needs one.

* CreateVirtualRouterOffering names the public network appliances take an address on.
* PreVmInstantiateResourceExtensionPoint: before a VM's domain starts, the appliance
  of each of its networks exists (made by the ``createVirtualRouter`` chain) and has
  the NIC's DHCP entry; ``pre_release_vm_resource`` removes it (stop, destroy, and the
  rollback of a failed create, which also takes away an appliance that create made if
  nothing else uses it).
* A ping tracker (``virtualRouter.ping.interval``) reconnects an appliance whose agent
  does not answer or lost its signature: the ``reconnectVirtualRouter`` chain makes
  what is missing on the host and replays DNS, DHCP and SNAT (the post-create flows).
* Operations on one appliance are serialised by a lock per guest network.
* The chains are durable and hold the appliance's state changes (see
  :mod:`core.virtual_router.flows`): a crash leaves no appliance Creating or Connecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import events as ev
from contracts import virtual_router as vr
from core.appliance.flows import forget_appliance, nics_by_role
from core.appliance.models import ApplianceVmVO
from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.host.models import HostVO
from core.kernel.errors import OperationError, argerr, not_found, operr
from core.kernel.extensions import Component, Plugin
from core.kernel.flow import checkpointer
from core.kernel.periodic import PeriodicTask
from core.kernel.rest import AgentClient
from core.kernel.service import Service, handles
from core.network.l2.models import L2NetworkClusterRefVO
from core.network.l3.extension_points import L3NetworkDeletionExtensionPoint
from core.network.l3.models import IpRangeVO, L3NetworkVO
from core.network.l3.nic_usage import nics_on_l3
from core.network.service.extension_points import NetworkServiceProviderType
from core.network.service.plugin import services_of
from core.tag.plugin import TagPlugin, delete_all_tags
from core.virtual_router import global_config
from core.virtual_router.api import (
    VIRTUAL_ROUTER,
    CreateVirtualRouterOffering,
    DeleteVirtualRouterOffering,
    DestroyVirtualRouter,
    QueryVirtualRouterOffering,
    QueryVirtualRouterVm,
    ReconnectVirtualRouter,
)
from core.virtual_router.client import open_client
from core.virtual_router.extension_points import VirtualRouterAccess
from core.virtual_router.flows import (
    CHAINS,
    CREATE_CHAIN,
    DESTROY_CHAIN,
    RECONNECT_CHAIN,
    RESUMABLE,
    RouterData,
)
from core.virtual_router.models import VirtualRouterOfferingVO
from core.virtual_router.sync import GUEST, dhcp_entry
from core.vm.extension_points import PreVmInstantiateResourceExtensionPoint
from core.vm.spec import VmInstanceSpec

log = logging.getLogger(__name__)
STATUS_EVENT = ev.ApplianceVmStatusChanged.PATH
REPAIRED_EVENT = ev.ApplianceVmRepaired.PATH
SERVICE_TYPES = ("DHCP", "DNS", "SNAT")


class VirtualRouterPlugin(
    Plugin,
    Service,
    Component,
    GlobalConfigProvider,
    NetworkServiceProviderType,
    PreVmInstantiateResourceExtensionPoint,
    L3NetworkDeletionExtensionPoint,
):
    implements = (
        Service,
        Component,
        GlobalConfigProvider,
        NetworkServiceProviderType,
        PreVmInstantiateResourceExtensionPoint,
        L3NetworkDeletionExtensionPoint,
        VirtualRouterAccess,
    )
    service_id = "virtualRouter"
    queries = (QueryVirtualRouterOffering, QueryVirtualRouterVm)
    provider_type = VIRTUAL_ROUTER
    service_types = SERVICE_TYPES

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        for name, flows in CHAINS.items():
            node.declare_chain(name, flows, RouterData, resumable=name in RESUMABLE)
        self._locks: dict[str, asyncio.Lock] = {}
        self._clients: dict[str, AgentClient] = {}
        self._tracker = PeriodicTask(
            node,
            "virtual-router-ping-tracker",
            global_config.CATEGORY,
            global_config.PING_INTERVAL.name,
            self.ping_all,
        )

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    async def start(self) -> None:
        self._tracker.start()

    async def stop(self) -> None:
        await self._tracker.stop()
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    def _lock(self, guest_l3_uuid: str) -> asyncio.Lock:
        return self._locks.setdefault(guest_l3_uuid, asyncio.Lock())

    # -- VirtualRouterAccess (for plugins) ---------------------------------------------

    def appliance_of(self, session: Session, guest_l3_uuid: str) -> dict[str, Any] | None:
        return _appliance_of(session, guest_l3_uuid)

    def router_nics(self, session: Session, appliance_uuid: str) -> dict[str, dict[str, Any]]:
        return nics_by_role(session, appliance_uuid)

    def public_network_of(self, session: Session, guest_l3_uuid: str) -> str | None:
        appliance = _appliance_of(session, guest_l3_uuid)
        if appliance is not None:
            return str(appliance["publicNetworkUuid"])
        try:
            return _offering_for(session, guest_l3_uuid).public_network_uuid
        except OperationError:
            return None

    @contextlib.asynccontextmanager
    async def locked(self, guest_l3_uuid: str) -> AsyncIterator[None]:
        async with self._lock(guest_l3_uuid):
            yield

    def client(self, appliance: dict[str, Any]) -> AgentClient:
        return self._client(appliance)

    # -- network service provider ----------------------------------------------------

    def check_attach(self, session: Session, l3: Any, service_types: list[str]) -> None:
        if l3.category != "Private":
            raise argerr(
                f"the virtual router serves private networks; L3 network {l3.name} is {l3.category}"
            )

    # -- offerings -----------------------------------------------------------------------

    @handles(CreateVirtualRouterOffering)
    async def create_offering(self, msg: CreateVirtualRouterOffering) -> dict[str, Any]:
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> dict[str, Any]:
            public = session.get(L3NetworkVO, msg.public_network_uuid)
            assert public is not None  # checked by the bus
            if public.category != "Public":
                raise argerr(
                    f"publicNetworkUuid: L3 network {public.name} is {public.category}, not Public"
                )
            if public.zone_uuid != msg.zone_uuid:
                raise argerr(f"publicNetworkUuid: L3 network {public.name} is in another zone")
            has_range = session.scalar(
                select(IpRangeVO.uuid).where(IpRangeVO.l3_network_uuid == public.uuid).limit(1)
            )
            if has_range is None:
                raise argerr(f"publicNetworkUuid: L3 network {public.name} has no IP range")
            others = list(
                session.scalars(
                    select(VirtualRouterOfferingVO).where(
                        VirtualRouterOfferingVO.zone_uuid == msg.zone_uuid
                    )
                )
            )
            if msg.is_default:
                for other in others:
                    other.is_default = False
            row = VirtualRouterOfferingVO(
                name=msg.name,
                description=msg.description,
                zone_uuid=msg.zone_uuid,
                public_network_uuid=public.uuid,
                is_default=msg.is_default or not others,
            )
            session.add(row)
            session.flush()
            tags.create_tags_from_message(
                session, msg, VirtualRouterOfferingVO.resource_type, row.uuid
            )
            return row.to_inventory()

        return await self.node.db.run(create)

    @handles(DeleteVirtualRouterOffering)
    async def delete_offering(self, msg: DeleteVirtualRouterOffering) -> None:
        def delete(session: Session) -> None:
            row = session.get(VirtualRouterOfferingVO, msg.uuid)
            if row is None:
                raise not_found(VirtualRouterOfferingVO.resource_type, msg.uuid)
            session.delete(row)
            delete_all_tags(session, [msg.uuid])

        await self.node.db.run(delete)

    # -- VMs ---------------------------------------------------------------------------------

    async def _served(self, l3_uuids: list[str]) -> dict[str, dict[str, str]]:
        """The VM's L3 networks that get a service from the virtual router -> services."""
        if not l3_uuids:  # a VM without NICs: no transaction on the hot path
            return {}

        def read(session: Session) -> dict[str, dict[str, str]]:
            out = {}
            for uuid in l3_uuids:
                services = services_of(session, uuid)
                if VIRTUAL_ROUTER in services.values():
                    out[uuid] = services
            return out

        return await self.node.db.run(read)

    async def pre_before_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None:
        """An L3 network served by the virtual router needs an offering (or a router)."""
        served = await self._served(spec.l3_network_uuids)
        if not served:
            return

        def check(session: Session) -> None:
            for uuid in served:
                if _appliance_of(session, uuid) is None:
                    _offering_for(session, uuid)

        await self.node.db.run(check)

    async def _served_nics(
        self, spec: VmInstanceSpec
    ) -> list[tuple[dict[str, Any], str, dict[str, str]]]:
        """``(nic, l3 uuid, services)`` of each NIC on a network the router serves."""
        served = await self._served(spec.l3_network_uuids)
        return [
            (nic, nic["l3NetworkUuid"], served[nic["l3NetworkUuid"]])
            for nic in spec.nics
            if nic["l3NetworkUuid"] in served
        ]

    async def pre_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None:
        for nic, l3_uuid, services in await self._served_nics(spec):
            async with self._lock(l3_uuid):
                appliance = await self._ensure(l3_uuid, spec)
                if services.get("DHCP") == VIRTUAL_ROUTER:
                    entry = await self._entry(appliance, nic, spec)
                    cmd = vr.AddDhcpCmd(rebuild=False, dhcp_entry_list=[entry])
                    await self._client(appliance).send(cmd)

    async def pre_release_vm_resource(self, spec: VmInstanceSpec) -> None:
        for nic, l3_uuid, services in await self._served_nics(spec):
            async with self._lock(l3_uuid):
                await self._release(spec, nic, l3_uuid, services)

    async def _release(
        self, spec: VmInstanceSpec, nic: dict[str, Any], l3_uuid: str, services: dict[str, str]
    ) -> None:
        """A VM's NIC leaves the router of its network (the caller holds its lock)."""
        appliance = await self.node.db.run(lambda s: _appliance_of(s, l3_uuid))
        if appliance is None:
            return
        # A router made for this VM goes with it when no other VM uses it, or when it was
        # never finished (the node died in its chain, which had made the row already): no
        # other VM could have been served by it.
        made_here = appliance["uuid"] in spec.made_by_this_operation
        if made_here and (
            appliance["state"] == "Creating"
            or not await self.node.db.run(lambda s: nics_on_l3(s, l3_uuid, except_vm=spec.vm_uuid))
        ):
            await self._destroy(appliance)
            return
        if services.get("DHCP") == VIRTUAL_ROUTER:
            key = vr.DhcpKeyTO(ip=nic["ip"], mac=nic["mac"])
            await self._client(appliance).send(vr.RemoveDhcpCmd(dhcp_entry_list=[key]))

    async def _entry(
        self, appliance: dict[str, Any], nic: dict[str, Any], spec: VmInstanceSpec
    ) -> vr.DhcpEntryTO:
        def build(session: Session) -> vr.DhcpEntryTO:
            guest = nics_by_role(session, appliance["uuid"])[GUEST]
            vm = {
                "uuid": spec.vm_uuid,
                "name": spec.name,
                "defaultL3NetworkUuid": spec.default_l3_network_uuid,
            }
            return dhcp_entry(session, nic, vm, guest)

        return await self.node.db.run(build)

    # -- appliances --------------------------------------------------------------------------

    async def _ensure(self, l3_uuid: str, spec: VmInstanceSpec) -> dict[str, Any]:
        """The appliance serving the network (the caller holds its lock), made if missing."""
        existing = await self.node.db.run(lambda s: _appliance_of(s, l3_uuid))
        if existing is not None:
            return existing
        return await self._create(l3_uuid, spec)

    async def _create(self, l3_uuid: str, spec: VmInstanceSpec) -> dict[str, Any]:
        """The ``createVirtualRouter`` chain for the network, on the VM's host.  The row is
        made here, and listed in ``spec.made_by_this_operation`` in the same transaction,
        written down with the VM's chain (if durable): whenever the node dies, the VM's
        rollback knows the router was made for it."""
        host_uuid = spec.dest_host_uuid
        assert host_uuid is not None
        save = checkpointer()

        def prepare(session: Session) -> tuple[dict[str, Any], str]:
            l3 = session.get(L3NetworkVO, l3_uuid)
            assert l3 is not None
            offering = _offering_for(session, l3_uuid)
            public = session.get(L3NetworkVO, offering.public_network_uuid)
            host = session.get(HostVO, host_uuid)
            assert public is not None and host is not None
            for network in (public, l3):
                attached = session.scalar(
                    select(L2NetworkClusterRefVO.uuid).where(
                        L2NetworkClusterRefVO.l2_network_uuid == network.l2_network_uuid,
                        L2NetworkClusterRefVO.cluster_uuid == host.cluster_uuid,
                    )
                )
                if attached is None:
                    raise operr(
                        f"the L2 network of L3 network {network.name} is not attached to the "
                        f"cluster of host {host.name}, so a virtual router there cannot "
                        "reach it; AttachL2NetworkToCluster first"
                    )
            row = ApplianceVmVO(
                name=f"vr-{l3.name}"[:255],
                description=f"virtual router of L3 network {l3.name}",
                appliance_vm_type=VIRTUAL_ROUTER,
                zone_uuid=l3.zone_uuid,
                cluster_uuid=host.cluster_uuid,
                host_uuid=host.uuid,
                offering_uuid=offering.uuid,
                public_network_uuid=public.uuid,
                guest_network_uuid=l3.uuid,
            )
            session.add(row)
            session.flush()
            spec.made_by_this_operation.append(row.uuid)
            save(session.connection())
            return row.to_inventory(), public.uuid

        appliance, public_uuid = await self.node.db.run(prepare)
        data = RouterData(
            appliance=appliance,
            networks=[(public_uuid, "public"), (l3_uuid, GUEST)],
            guest_l3=l3_uuid,
        ).bind(self.node)
        # FlowChain.start is typed for dict data; it runs over any chain data alike.
        outcome = await self.node.chain(CREATE_CHAIN).start(data)  # type: ignore[arg-type]
        if not outcome.succeeded:
            # Gone already, unless the chain failed before its row flow.
            await self.node.db.run(lambda s: forget_appliance(s, appliance["uuid"]))
            outcome.raise_for_error(f"cannot create the virtual router of L3 network {l3_uuid}")
        return data.appliance

    async def _destroy(self, appliance: dict[str, Any]) -> None:
        """The ``destroyVirtualRouter`` chain: its last flow forgets the row."""
        data = RouterData(appliance=appliance, guest_l3=appliance["guestNetworkUuid"])
        chain = self.node.chain(DESTROY_CHAIN)
        outcome = await chain.start(data.bind(self.node))  # type: ignore[arg-type]  # as above
        outcome.raise_for_error(f"cannot destroy virtual router {appliance['name']}")

    async def reconnect(self, appliance: dict[str, Any]) -> dict[str, Any]:
        """Make what is missing on the host, then replay DNS, DHCP and SNAT (the caller
        holds the appliance's lock): the ``reconnectVirtualRouter`` chain."""
        data = RouterData(appliance=appliance, guest_l3=appliance["guestNetworkUuid"])
        chain = self.node.chain(RECONNECT_CHAIN)
        outcome = await chain.start(data.bind(self.node))  # type: ignore[arg-type]  # as above
        outcome.raise_for_error(f"cannot reconnect virtual router {appliance['name']}")
        return data.appliance

    def _client(self, appliance: dict[str, Any]) -> AgentClient:
        client = self._clients.get(appliance["uuid"])
        if client is None:
            client = self._clients[appliance["uuid"]] = open_client(self.node, appliance)
        return client

    async def keep_client(self, uuid: str, client: AgentClient) -> None:
        """From now on, talk to appliance ``uuid``'s agent through ``client``."""
        old = self._clients.get(uuid)
        self._clients[uuid] = client
        if old is not client:
            await _close(old)

    async def drop_client(self, uuid: str) -> None:
        """Close the client of appliance ``uuid``'s agent, if one is open."""
        await _close(self._clients.pop(uuid, None))

    async def update_appliance(
        self, uuid: str, *, missing_ok: bool = False, **columns: str
    ) -> dict[str, Any] | None:
        """Set columns of an appliance's row; a status change is published on
        ``/appliance-vm/status/change``.  A missing row raises, or with ``missing_ok``
        changes nothing (returns None)."""

        def update(session: Session) -> tuple[str, dict[str, Any]] | None:
            row = session.get(ApplianceVmVO, uuid)
            if row is None:
                if missing_ok:
                    return None
                raise not_found(ApplianceVmVO.resource_type, uuid)
            old = row.status
            for key, value in columns.items():
                setattr(row, key, value)
            session.flush()
            return old, row.to_inventory()

        changed = await self.node.db.run(update)
        if changed is None:
            return None
        old, inventory = changed
        if old != inventory["status"]:
            event = ev.ApplianceVmStatusChanged(
                appliance_vm_uuid=inventory["uuid"],
                old_status=old,
                new_status=inventory["status"],
                inventory=inventory,
            )
            self.node.events.publish(event.PATH, event.to_json())
        return inventory

    # -- ping tracker ----------------------------------------------------------------------

    async def ping_all(self) -> None:
        appliances = await self.node.db.run(
            lambda s: [
                a.to_inventory()
                for a in s.scalars(
                    select(ApplianceVmVO).where(
                        ApplianceVmVO.appliance_vm_type == VIRTUAL_ROUTER,
                        ApplianceVmVO.state == "Running",
                    )
                )
            ]
        )
        await asyncio.gather(*(self._ping(a) for a in appliances))

    async def _ping(self, appliance: dict[str, Any]) -> None:
        reason = None
        try:
            answer = await self._client(appliance).send(vr.PingCmd(), timeout=10)
        except OperationError as exc:
            reason = f"its agent does not answer ({exc.error.description})"
        else:
            if answer.uuid != appliance["uuid"]:
                reason = "its agent restarted (the signature is gone)"
            elif answer.repaired:
                log.info(
                    "virtual router %s repaired itself: %s",
                    appliance["name"],
                    "; ".join(answer.repaired),
                )
                repaired = ev.ApplianceVmRepaired(
                    appliance_vm_uuid=appliance["uuid"], repaired=answer.repaired
                )
                self.node.events.publish(repaired.PATH, repaired.to_json())
        if reason is None:
            if appliance["status"] != "Connected":
                await self.update_appliance(appliance["uuid"], status="Connected")
            return
        lock = self._lock(appliance["guestNetworkUuid"])
        if lock.locked():
            return  # an operation on it is running; the next round looks again
        async with lock:
            log.warning("virtual router %s: %s; reconnecting", appliance["name"], reason)
            current = await self.node.db.run(lambda s: _inventory(s, appliance["uuid"]))
            if current is None or current["state"] != "Running":
                return
            try:
                await self.reconnect(current)
            except OperationError as exc:
                log.warning(
                    "virtual router %s could not be reconnected: %s", appliance["name"], exc.error
                )

    # -- API ---------------------------------------------------------------------------------

    @handles(ReconnectVirtualRouter)
    async def api_reconnect(self, msg: ReconnectVirtualRouter) -> dict[str, Any]:
        appliance = await self._load(msg.uuid)
        async with self._lock(appliance["guestNetworkUuid"]):
            return await self.reconnect(appliance)

    @handles(DestroyVirtualRouter)
    async def api_destroy(self, msg: DestroyVirtualRouter) -> None:
        appliance = await self._load(msg.uuid)
        async with self._lock(appliance["guestNetworkUuid"]):
            await self._destroy(appliance)

    async def _load(self, uuid: str) -> dict[str, Any]:
        appliance = await self.node.db.run(lambda s: _inventory(s, uuid))
        if appliance is None:
            raise not_found(ApplianceVmVO.resource_type, uuid)
        return appliance

    # -- L3 deletion -------------------------------------------------------------------------

    async def before_delete_l3_network(self, l3: dict[str, Any]) -> None:
        def users(session: Session) -> tuple[list[str], list[str]]:
            offerings = list(
                session.scalars(
                    select(VirtualRouterOfferingVO.name).where(
                        VirtualRouterOfferingVO.public_network_uuid == l3["uuid"]
                    )
                )
            )
            routers = list(
                session.scalars(
                    select(ApplianceVmVO.name).where(
                        ApplianceVmVO.public_network_uuid == l3["uuid"]
                    )
                )
            )
            return offerings, routers

        offerings, routers = await self.node.db.run(users)
        if routers:
            raise operr(
                f"L3 network {l3['name']} is the public network of virtual router(s) "
                f"{', '.join(routers)}; destroy them first"
            )
        if offerings:
            raise operr(
                f"L3 network {l3['name']} is the public network of virtual router "
                f"offering(s) {', '.join(offerings)}; delete them first"
            )
        async with self._lock(l3["uuid"]):
            appliance = await self.node.db.run(lambda s: _appliance_of(s, l3["uuid"]))
            if appliance is not None:
                await self._destroy(appliance)


def _appliance_of(session: Session, l3_uuid: str) -> dict[str, Any] | None:
    row = session.scalars(
        select(ApplianceVmVO).where(
            ApplianceVmVO.guest_network_uuid == l3_uuid,
            ApplianceVmVO.appliance_vm_type == VIRTUAL_ROUTER,
        )
    ).first()
    return None if row is None else row.to_inventory()


def _inventory(session: Session, uuid: str) -> dict[str, Any] | None:
    row = session.get(ApplianceVmVO, uuid)
    return None if row is None else row.to_inventory()


def _offering_for(session: Session, l3_uuid: str) -> VirtualRouterOfferingVO:
    l3 = session.get(L3NetworkVO, l3_uuid)
    assert l3 is not None
    offering = session.scalars(
        select(VirtualRouterOfferingVO)
        .where(VirtualRouterOfferingVO.zone_uuid == l3.zone_uuid)
        .order_by(VirtualRouterOfferingVO.is_default.desc(), VirtualRouterOfferingVO.create_date)
    ).first()
    if offering is None:
        raise operr(
            f"L3 network {l3.name} gets network services from the virtual router, but its "
            "zone has no virtual router offering; CreateVirtualRouterOffering first"
        )
    return offering


async def _close(client: AgentClient | None) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            await client.close()
