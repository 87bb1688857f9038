"""First start: make this machine a usable lab (ZStack's deployer, for one host).

When ``bootstrap.local_host`` is ``kvm`` or ``simulator``, the node makes sure a
zone, a cluster of that hypervisor type and the local host exist, through the
public API like any user would.  Once done it records the inherent tag
``bootstrap::<kind>`` on the management node, so a host the user deletes later
is not brought back.  Then, each once and each recorded the same way
(``bootstrap::<step>``), the defaults a user needs to create a VM with nothing
but an image, an offering and a network:

- ``public-network``: the default public network and virtual router offering;
- ``private-network``: a private L3 network with the virtual router's DHCP, DNS
  and SNAT (only once the public network exists: SNAT goes out through it);
- ``instance-offering``: the offering ``small`` (1 vCPU, 256 MiB);
- ``image``: the file ``bootstrap.image`` (the tiny guest ``make guest-image``
  builds), added through ``AddImage``.  A missing file is a warning, not a
  failure: the step is tried again at the next start.

A step that finds its resource already there (a restart after a step made it but
could not record it, or the user made it) makes nothing.  A step that fails
undoes what it made, is logged, shown among the node's problems
(``zstack-lite status``, the dashboard) and tried again every
``RETRY_INTERVAL`` seconds while the node runs; it never stops the node (the
user can see and fix it, e.g. stop a program that holds the agent's port).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.cluster.models import ClusterVO
from core.host.models import HostVO
from core.host.plugin import HostPlugin
from core.image.models import ImageVO
from core.kernel.errors import OperationError, operr
from core.kernel.extensions import Component, Plugin
from core.management_node.models import ManagementNodeVO
from core.management_node.plugin import ManagementNodePlugin, NodeStatusExtensionPoint
from core.network.l3.models import IpRangeVO, L3NetworkVO
from core.network.l3.system_tags import HOST_NAT
from core.network.service.plugin import NetworkServicePlugin
from core.offering.models import InstanceOfferingVO
from core.storage.models import BackupStorageVO, PrimaryStorageVO
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.tag.models import SystemTagVO
from core.tag.plugin import TagPlugin
from core.virtual_router.api import VIRTUAL_ROUTER
from core.zone.models import ZoneVO

log = logging.getLogger(__name__)
DONE_PREFIX = "bootstrap::"
DONE_TAG = SystemTagDef(DONE_PREFIX + "{kind}", "ManagementNodeVO")
KINDS = {"kvm": "KVM", "simulator": "Simulator"}
PUBLIC_NETWORK = "public-network"
PUBLIC_CIDRS = ("192.168.253.0/24", "10.253.253.0/24", "172.31.253.0/24")
"""Candidates for the default public network, tried in order."""
PRIVATE_NETWORK = "private-network"
PRIVATE_NAME = "private"
PRIVATE_CIDRS = ("10.0.10.0/24", "172.30.10.0/24", "192.168.210.0/24")
"""Candidates for the default private network, tried in order (those overlapping an IP
range of another network, the public one included, are passed over)."""
PRIVATE_DNS_DOMAIN = "lab.lan"
PRIVATE_SERVICES = ("DHCP", "DNS", "SNAT")
OPTIONAL_SERVICES = ("PortForwarding", "Eip", "Userdata")
"""Services plugins add to the virtual router: the default private network gets each
(once, as the step ``private-network-<type>``) when its plugin is there, so port forwarding
from the host works out of the box; a user who detaches one keeps it detached."""
INSTANCE_OFFERING = "instance-offering"
OFFERING_NAME = "small"
OFFERING_CPUS = 1
OFFERING_MEMORY = 256 * 1024**2
"""The size the system tests boot the tiny guest with (kernel + busybox initramfs)."""
IMAGE = "image"
RETRY_INTERVAL = 10.0
"""Seconds between two tries of the steps that failed, while the node runs."""
RECONNECT_WAIT = 120.0
"""Seconds a restart with steps left waits for the hosts' reconnection (see start)."""
Made = list[tuple[str, str]]
"""(delete API, uuid) of what a step made, undone in reverse if a later call fails."""


class BootstrapPlugin(Plugin, Component, SystemTagProvider, NodeStatusExtensionPoint):
    implements = (Component, SystemTagProvider, NodeStatusExtensionPoint)
    order = 0  # after every service has started

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self._failed: dict[str, str] = {}
        """What failed in the last try, by step: ``what`` and the error, for the status."""
        self._retry: asyncio.Task[None] | None = None

    def system_tags(self) -> list[SystemTagDef]:
        return [DONE_TAG]

    async def start(self) -> None:
        kind = self.node.props["bootstrap.local_host"]
        if kind == "none":
            return
        if kind not in KINDS:
            log.error("bootstrap.local_host must be kvm, simulator or none, not %r", kind)
            return
        image: Path | None = self.node.props["bootstrap.image"]
        needing_host = {kind, PUBLIC_NETWORK, PRIVATE_NETWORK} | (
            {IMAGE} if image is not None and image.is_file() else set()
        )
        if needing_host - await self._done():
            await self._hosts_reconnected()
        if not await self._run(kind):
            self._retry = asyncio.create_task(self._retry_until_done(kind), name="bootstrap")

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None

    async def node_status(self) -> dict[str, Any]:
        return {
            "problems": [
                f"first-start bootstrap of {text} (tried again every {RETRY_INTERVAL:g}s)"
                for text in self._failed.values()
            ]
        }

    async def _retry_until_done(self, kind: str) -> None:
        while True:
            await asyncio.sleep(RETRY_INTERVAL)
            try:
                if await self._run(kind):
                    log.info("first-start bootstrap finished")
                    return
            except Exception:
                log.exception("first-start bootstrap failed; tried again")

    async def _run(self, kind: str) -> bool:
        """Every step not done yet, in order; True when all are done."""
        if not await self._step(kind, lambda: self._bootstrap(KINDS[kind]), f"a {kind} host"):
            return False
        done = True
        if await self._step(PUBLIC_NETWORK, self._public_network, "the default public network"):
            private = await self._step(
                PRIVATE_NETWORK, self._private_network, "the default private network"
            )
            offered = self.node.plugin(NetworkServicePlugin).offered(VIRTUAL_ROUTER)
            for service in (t for t in OPTIONAL_SERVICES if t in offered and private):
                done &= await self._step(
                    f"{PRIVATE_NETWORK}-{service}",
                    lambda service=service: self._private_service(service),
                    f"{service} on the default private network",
                )
            done &= private
        else:
            log.info("the default private network waits for the public one")
            done = False
        done &= await self._step(
            INSTANCE_OFFERING, self._instance_offering, "the default instance offering"
        )
        return await self._image_step() and done

    async def _step(self, kind: str, work: Callable[[], Awaitable[None]], what: str) -> bool:
        """Run a bootstrap step unless done before; record it as done.  False if it failed
        (logged, and kept for the node's status until it succeeds)."""
        tags = self.node.plugin(TagPlugin)
        node_uuid = self.node.plugin(ManagementNodePlugin).uuid
        if kind in await self._done():
            return True
        try:
            await work()
        except OperationError as exc:
            self._failed[kind] = f"{what} failed: {_one_line(exc)}"
            log.warning("first-start bootstrap of %s failed (tried again): %s", what, exc.error)
            return False
        self._failed.pop(kind, None)
        await self.node.db.run(
            lambda s: tags.create_system_tag(
                s,
                ManagementNodeVO.resource_type,
                node_uuid,
                DONE_TAG.instantiate(kind=kind),
                inherent=True,
            )
        )
        log.info("bootstrapped %s", what)
        return True

    async def _done(self) -> set[str]:
        """The steps recorded as done on this management node."""
        tags = self.node.plugin(TagPlugin)
        node_uuid = self.node.plugin(ManagementNodePlugin).uuid
        rows = await self.node.db.run(lambda s: tags.system_tags(s, node_uuid, DONE_TAG))
        return {row.tag.removeprefix(DONE_PREFIX) for row in rows}

    async def _hosts_reconnected(self) -> None:
        """At a restart the host service reconnects the hosts in the background (a simulator
        host's agent is started again first); the network and image steps call the local
        host's agent, so they wait for that, at most RECONNECT_WAIT seconds."""
        await self.node.plugin(HostPlugin).reconnected(RECONNECT_WAIT)

    async def _bootstrap(self, hypervisor: str) -> None:
        def existing(session: Session) -> tuple[str | None, str | None, bool]:
            zone = session.scalars(select(ZoneVO.uuid).order_by(ZoneVO.create_date)).first()
            cluster = (
                None
                if zone is None
                else session.scalars(
                    select(ClusterVO.uuid).where(
                        ClusterVO.zone_uuid == zone, ClusterVO.hypervisor_type == hypervisor
                    )
                ).first()
            )
            host = (
                cluster is not None
                and session.scalars(
                    select(HostVO.uuid).where(HostVO.cluster_uuid == cluster)
                ).first()
                is not None
            )
            return zone, cluster, host

        zone, cluster, has_host = await self.node.db.run(existing)
        if zone is None:
            zone = (
                await self._call(
                    "CreateZone", {"name": "default", "description": "made at first start"}
                )
            )["uuid"]
        if cluster is None:
            cluster = (
                await self._call(
                    "CreateCluster",
                    {
                        "name": f"default-{hypervisor.lower()}",
                        "zoneUuid": zone,
                        "hypervisorType": hypervisor,
                    },
                )
            )["uuid"]
        if not has_host:
            await self._add_host(hypervisor, cluster)
        await self._add_storage(zone, cluster)

    async def _add_host(self, hypervisor: str, cluster: str) -> None:
        name = socket.gethostname()
        if hypervisor == "KVM":
            await self._call(
                "AddKVMHost",
                {
                    "name": name,
                    "clusterUuid": cluster,
                    "managementIp": "127.0.0.1",
                    "agentPort": self.node.props["agent.port"],
                },
            )
        else:
            await self._call(
                "AddSimulatorHost", {"name": f"{name}-simulator", "clusterUuid": cluster}
            )

    async def _add_storage(self, zone: str, cluster: str) -> None:
        """Backup and primary storage under the data dir, the latter attached to the cluster."""

        def existing(session: Session) -> tuple[bool, str | None]:
            backup = session.scalars(
                select(BackupStorageVO.uuid).where(BackupStorageVO.zone_uuid == zone)
            ).first()
            primary = session.scalars(
                select(PrimaryStorageVO.uuid).where(PrimaryStorageVO.zone_uuid == zone)
            ).first()
            return backup is not None, primary

        has_backup, primary = await self.node.db.run(existing)
        data_dir = self.node.data_dir
        if not has_backup:
            await self._call(
                "AddLocalBackupStorage",
                {"name": "local-backup", "zoneUuid": zone, "url": str(data_dir / "backup-storage")},
            )
        if primary is None:
            primary = (
                await self._call(
                    "AddLocalPrimaryStorage",
                    {
                        "name": "local-primary",
                        "zoneUuid": zone,
                        "url": str(data_dir / "primary-storage"),
                    },
                )
            )["uuid"]
        await self._call(
            "AttachPrimaryStorageToCluster", {"primaryStorageUuid": primary, "clusterUuid": cluster}
        )

    async def _public_network(self) -> None:
        """A public L3 network that works on any host without configuration: an isolated
        bridge whose gateway is the host, which masquerades it through its own routes
        (system tag hostNat), and the zone's default virtual router offering on it.
        The first of PUBLIC_CIDRS that overlaps no host route is taken."""

        def existing(session: Session) -> tuple[str | None, str | None, bool]:
            zone = session.scalars(select(ZoneVO.uuid).order_by(ZoneVO.create_date)).first()
            cluster = session.scalars(
                select(ClusterVO.uuid)
                .where(ClusterVO.zone_uuid == zone)
                .order_by(ClusterVO.create_date)
            ).first()
            has_public = (
                session.scalar(select(SystemTagVO.uuid).where(SystemTagVO.tag_is(HOST_NAT.pattern)))
                is not None
            )
            return zone, cluster, has_public

        zone, cluster, has_public = await self.node.db.run(existing)
        if zone is None or cluster is None or has_public:
            return
        await self._undone_on_failure(lambda made: self._make_public_network(zone, cluster, made))

    async def _make_public_network(self, zone: str, cluster: str, made: Made) -> None:
        l2 = await self._call(
            "CreateL2NoVlanNetwork",
            {"name": "public", "zoneUuid": zone, "description": "made at first start"},
        )
        made.append(("DeleteL2Network", l2["uuid"]))
        await self._call(
            "AttachL2NetworkToCluster", {"l2NetworkUuid": l2["uuid"], "clusterUuid": cluster}
        )
        l3 = await self._call(
            "CreateL3Network",
            {
                "name": "public",
                "l2NetworkUuid": l2["uuid"],
                "category": "Public",
                "systemTags": [HOST_NAT.pattern],
                "description": "the host is its gateway and masquerades it (made at first start)",
            },
        )
        made.append(("DeleteL3Network", l3["uuid"]))
        refusals = []
        for cidr in PUBLIC_CIDRS:
            reply = await self.node.call(
                "AddIpRangeByNetworkCidr",
                {"l3NetworkUuid": l3["uuid"], "name": "public", "networkCidr": cidr},
            )
            if reply.success:
                break
            assert reply.error is not None
            refusals.append(reply.error.description)
        else:
            raise operr(
                "every candidate network of the default public network overlaps a host route",
                "; ".join(refusals),
            )
        await self._call(
            "CreateVirtualRouterOffering",
            {"name": "default", "zoneUuid": zone, "publicNetworkUuid": l3["uuid"]},
        )

    async def _private_network(self) -> None:
        """A private L3 network guests get their addresses on: an isolated bridge attached
        to the cluster, the first of PRIVATE_CIDRS that overlaps neither a host route nor
        another network's range, domain PRIVATE_DNS_DOMAIN, and the virtual router's DHCP,
        DNS and SNAT (the router is made, on the default offering, with its first VM)."""

        def existing(session: Session) -> tuple[str | None, str | None, bool, list[str]]:
            zone = session.scalars(select(ZoneVO.uuid).order_by(ZoneVO.create_date)).first()
            cluster = session.scalars(
                select(ClusterVO.uuid)
                .where(ClusterVO.zone_uuid == zone)
                .order_by(ClusterVO.create_date)
            ).first()
            has_private = (
                session.scalars(
                    select(L3NetworkVO.uuid).where(
                        L3NetworkVO.zone_uuid == zone,
                        L3NetworkVO.name == PRIVATE_NAME,
                        L3NetworkVO.category == "Private",
                    )
                ).first()
                is not None
            )
            taken = list(session.scalars(select(IpRangeVO.network_cidr)))
            return zone, cluster, has_private, taken

        zone, cluster, has_private, taken = await self.node.db.run(existing)
        if zone is None or cluster is None:
            return
        if has_private:
            log.info("an L3 network %r exists already: no default private one made", PRIVATE_NAME)
            return
        used = [ipaddress.IPv4Network(cidr) for cidr in taken]
        cidrs = [
            c for c in PRIVATE_CIDRS if not any(ipaddress.IPv4Network(c).overlaps(u) for u in used)
        ]
        if not cidrs:
            raise operr(
                "every candidate network of the default private network overlaps another network",
                ", ".join(PRIVATE_CIDRS),
            )
        await self._undone_on_failure(
            lambda made: self._make_private_network(zone, cluster, cidrs, made)
        )

    async def _make_private_network(
        self, zone: str, cluster: str, cidrs: list[str], made: Made
    ) -> None:
        l2 = await self._call(
            "CreateL2NoVlanNetwork",
            {"name": PRIVATE_NAME, "zoneUuid": zone, "description": "made at first start"},
        )
        made.append(("DeleteL2Network", l2["uuid"]))
        await self._call(
            "AttachL2NetworkToCluster", {"l2NetworkUuid": l2["uuid"], "clusterUuid": cluster}
        )
        l3 = await self._call(
            "CreateL3Network",
            {
                "name": PRIVATE_NAME,
                "l2NetworkUuid": l2["uuid"],
                "category": "Private",
                "dnsDomain": PRIVATE_DNS_DOMAIN,
                "description": "DHCP, DNS and SNAT by the virtual router (made at first start)",
            },
        )
        made.append(("DeleteL3Network", l3["uuid"]))
        refusals = [f"{c} overlaps another network" for c in PRIVATE_CIDRS if c not in cidrs]
        for cidr in cidrs:
            reply = await self.node.call(
                "AddIpRangeByNetworkCidr",
                {"l3NetworkUuid": l3["uuid"], "name": PRIVATE_NAME, "networkCidr": cidr},
            )
            if reply.success:
                break
            assert reply.error is not None
            refusals.append(reply.error.description)
        else:
            raise operr(
                "every candidate network of the default private network overlaps a host route "
                "or another network",
                "; ".join(refusals),
            )
        provider = await self.node.plugin(NetworkServicePlugin).provider_uuid(VIRTUAL_ROUTER)
        await self._call(
            "AttachNetworkServiceToL3Network",
            {"l3NetworkUuid": l3["uuid"], "networkServices": {provider: list(PRIVATE_SERVICES)}},
        )

    async def _private_service(self, service: str) -> None:
        """Attach ``service`` of the virtual router to the default private network (if it
        is still there)."""
        l3 = await self.node.db.run(
            lambda s: s.scalars(
                select(L3NetworkVO.uuid)
                .where(L3NetworkVO.name == PRIVATE_NAME, L3NetworkVO.category == "Private")
                .order_by(L3NetworkVO.create_date)
            ).first()
        )
        if l3 is None:
            return
        provider = await self.node.plugin(NetworkServicePlugin).provider_uuid(VIRTUAL_ROUTER)
        await self._call(
            "AttachNetworkServiceToL3Network",
            {"l3NetworkUuid": l3, "networkServices": {provider: [service]}},
        )

    async def _instance_offering(self) -> None:
        """The offering ``small``, enough for the tiny guest; none if one of that name exists."""
        exists = await self.node.db.run(
            lambda s: (
                s.scalars(
                    select(InstanceOfferingVO.uuid).where(InstanceOfferingVO.name == OFFERING_NAME)
                ).first()
                is not None
            )
        )
        if exists:
            log.info("an instance offering %r exists already: none made", OFFERING_NAME)
            return
        await self._call(
            "CreateInstanceOffering",
            {
                "name": OFFERING_NAME,
                "cpuNum": OFFERING_CPUS,
                "memorySize": OFFERING_MEMORY,
                "description": "made at first start",
            },
        )

    async def _image_step(self) -> bool:
        """The image file of ``bootstrap.image``, unless unset; a missing file is only a
        warning (not recorded: the image is added at the first start that finds it)."""
        path: Path | None = self.node.props["bootstrap.image"]
        if path is None:
            log.info("no bootstrap.image: the lab starts without an image")
            return True
        if not path.is_file():
            log.warning(
                "first-start image %s does not exist (`make guest-image` builds the tiny "
                "guest): no image added, tried again at next start",
                path,
            )
            return True
        return await self._step(IMAGE, lambda: self._image(path), f"the image {path}")

    async def _image(self, path: Path) -> None:
        """Through AddImage, so it is a real image on backup storage (named after the file:
        ``tiny-guest``); none if an image from that file exists (not Deleted)."""
        exists = await self.node.db.run(
            lambda s: (
                s.scalars(
                    select(ImageVO.uuid).where(
                        ImageVO.url == str(path), ImageVO.status != "Deleted"
                    )
                ).first()
                is not None
            )
        )
        if exists:
            log.info("an image from %s exists already: not added again", path)
            return
        await self._call(
            "AddImage",
            {
                "name": path.stem,
                "url": str(path),
                "description": "made at first start",
            },
        )

    async def _undone_on_failure(self, work: Callable[[Made], Awaitable[None]]) -> None:
        """Run ``work`` with a list it appends what it makes to; if it fails, delete those
        in reverse order (a failed delete is logged: the original failure is raised)."""
        made: Made = []
        try:
            await work(made)
        except BaseException:
            for api, uuid in reversed(made):
                reply = await self.node.call(api, {"uuid": uuid})
                if not reply.success:
                    log.error("could not undo a bootstrap step: %s %s: %s", api, uuid, reply.error)
            raise

    async def _call(self, api: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = await self.node.call(api, params)
        if not reply.success:
            assert reply.error is not None
            raise OperationError(reply.error)
        assert reply.inventory is not None
        return reply.inventory


def _one_line(exc: OperationError) -> str:
    """The error and its causes' descriptions, as one line (for the node's status)."""
    return "; ".join(
        err.description + (f" ({err.details})" if err.details else "") for err in exc.error.causes()
    )
