"""First start: make this machine a usable lab (ZStack's deployer, for one host).

When ``bootstrap.local_host`` is ``kvm`` or ``simulator``, the node makes sure a
zone, a cluster of that hypervisor type and the local host exist, through the
public API like any user would.  Once done it records the inherent tag
``bootstrap::<kind>`` on the management node, so a host the user deletes later
is not brought back.  Then, once, the default public network (``bootstrap::public-network``).
A failure is logged and retried at the next start; it never stops the node (the
user can see and fix it, e.g. start libvirtd).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.cluster.models import ClusterVO
from core.host.models import HostVO
from core.kernel.errors import OperationError, operr
from core.kernel.extensions import Component, Plugin
from core.management_node.models import ManagementNodeVO
from core.management_node.plugin import ManagementNodePlugin
from core.network.l3.system_tags import HOST_NAT
from core.storage.models import BackupStorageVO, PrimaryStorageVO
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.tag.models import SystemTagVO
from core.tag.plugin import TagPlugin
from core.zone.models import ZoneVO

log = logging.getLogger(__name__)
DONE_TAG = SystemTagDef("bootstrap::{kind}", "ManagementNodeVO")
KINDS = {"kvm": "KVM", "simulator": "Simulator"}
PUBLIC_NETWORK = "public-network"
PUBLIC_CIDRS = ("192.168.253.0/24", "10.253.253.0/24", "172.31.253.0/24")
"""Candidates for the default public network, tried in order."""


class BootstrapPlugin(Plugin, Component, SystemTagProvider):
    implements = (Component, SystemTagProvider)
    order = 0  # after every service has started

    def system_tags(self) -> list[SystemTagDef]:
        return [DONE_TAG]

    async def start(self) -> None:
        kind = self.node.props["bootstrap.local_host"]
        if kind == "none":
            return
        if kind not in KINDS:
            log.error("bootstrap.local_host must be kvm, simulator or none, not %r", kind)
            return
        if await self._step(kind, lambda: self._bootstrap(KINDS[kind]), f"a {kind} host"):
            await self._step(PUBLIC_NETWORK, self._public_network, "the default public network")

    async def _step(self, kind: str, work: Callable[[], Awaitable[None]], what: str) -> bool:
        """Run a bootstrap step unless done before; record it as done.  False if it failed
        (logged; it is tried again at the next start)."""
        tags = self.node.plugin(TagPlugin)
        node_uuid = self.node.plugin(ManagementNodePlugin).uuid
        tag = DONE_TAG.instantiate(kind=kind)
        done = await self.node.db.run(lambda s: tags.system_tags(s, node_uuid, DONE_TAG))
        if any(row.tag == tag for row in done):
            return True
        try:
            await work()
        except OperationError as exc:
            log.warning(
                "first-start bootstrap of %s failed (retried at next start): %s", what, exc.error
            )
            return False
        await self.node.db.run(
            lambda s: tags.create_system_tag(
                s, ManagementNodeVO.resource_type, node_uuid, tag, inherent=True
            )
        )
        log.info("bootstrapped %s", what)
        return True

    async def stop(self) -> None:
        pass

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
                session.scalar(select(SystemTagVO.uuid).where(SystemTagVO.tag == HOST_NAT.pattern))
                is not None
            )
            return zone, cluster, has_public

        zone, cluster, has_public = await self.node.db.run(existing)
        if zone is None or cluster is None or has_public:
            return
        made: list[tuple[str, str]] = []  # (delete API, uuid), undone if a step fails
        try:
            await self._make_public_network(zone, cluster, made)
        except BaseException:
            for api, uuid in reversed(made):
                await self.node.call(api, {"uuid": uuid})
            raise

    async def _make_public_network(
        self, zone: str, cluster: str, made: list[tuple[str, str]]
    ) -> None:
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

    async def _call(self, api: str, params: dict[str, Any]) -> dict[str, Any]:
        reply = await self.node.call(api, params)
        if not reply.success:
            assert reply.error is not None
            raise OperationError(reply.error)
        assert reply.inventory is not None
        return reply.inventory
