"""The volume service: data volumes (create, attach, detach, delete, recover, expunge)
and the query of every volume, root and data.

Each change is a declared chain (core.volume.flows); the handler checks what the chain
needs under the volume's queue and its VM's, so a check cannot go stale before the
chain runs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.config.plugin import GlobalConfigPlugin
from core.image.models import ImageVO
from core.kernel.db import new_uuid
from core.kernel.deletion import expunge_expired
from core.kernel.errors import argerr, operr
from core.kernel.extensions import Component, Plugin
from core.kernel.periodic import PeriodicTask
from core.kernel.service import Service, handles
from core.offering.models import DiskOfferingVO
from core.tag.plugin import TagPlugin, delete_all_tags
from core.vm.models import VmInstanceVO
from core.volume import flows, global_config, resize
from core.volume.api import (
    AttachDataVolumeToVm,
    CreateDataVolume,
    CreateDataVolumeFromVolumeTemplate,
    DeleteDataVolume,
    DetachDataVolumeFromVm,
    ExpungeDataVolume,
    QueryVolume,
    RecoverDataVolume,
)
from core.volume.files import DATA, free_device_id
from core.volume.models import VolumeVO
from core.volume.resize_api import ResizeDataVolume, ResizeRootVolume
from core.volume.spi import VolumeSite, volume_and_vm_locked, volume_locked

DELETED = "Deleted"
READY = "Ready"
ATTACHABLE_VM_STATES = ("Running", "Stopped")


class VolumePlugin(Plugin, Service, GlobalConfigProvider, Component):
    implements = (Service, GlobalConfigProvider, Component)
    service_id = "volume"
    queries = (QueryVolume,)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        for name, (flow_list, data_class, resumable) in flows.CHAINS.items():
            node.declare_chain(name, flow_list, data_class, resumable=resumable)
        node.declare_chain(
            resize.CHAIN, resize.DEFAULT_FLOWS, resize.ResizeVolumeData, resumable=True
        )
        self._expunger = PeriodicTask(
            node,
            "volume-expunger",
            global_config.CATEGORY,
            global_config.EXPUNGE_INTERVAL.name,
            self.expunge_expired,
        )

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    async def start(self) -> None:
        self._expunger.start()

    async def stop(self) -> None:
        await self._expunger.stop()

    async def expunge_expired(self) -> None:
        """With the Delay policy, expunge data volumes Deleted longer than
        volume.expungePeriod ago."""
        await expunge_expired(
            self.node, global_config.CATEGORY, VolumeVO, "status", DELETED, "ExpungeDataVolume"
        )

    def _config(self, category: str, name: str) -> Any:
        return self.node.plugin(GlobalConfigPlugin).value(category, name)

    async def _run(self, chain: str, data: Any, failed: str) -> None:
        # FlowChain.start is typed for dict data (core.kernel.flow); it takes the chain's FlowData
        outcome = await self.node.chain(chain).start(data.bind(self.node))
        outcome.raise_for_error(failed)

    async def _inventory(self, volume_uuid: str) -> dict[str, Any]:
        def read(session: Session) -> dict[str, Any]:
            row = session.get(VolumeVO, volume_uuid)
            assert row is not None
            return row.to_inventory()

        return await self.node.db.run(read)

    # -- create -----------------------------------------------------------------------

    @handles(CreateDataVolume)
    async def create(self, msg: CreateDataVolume) -> dict[str, Any]:
        if bool(msg.disk_offering_uuid) == bool(msg.disk_size):
            raise argerr("give either diskOfferingUuid or diskSize (bytes), not both or neither")
        size = msg.disk_size
        if msg.disk_offering_uuid:
            offering = await self.node.db.run(
                lambda s: s.get(DiskOfferingVO, msg.disk_offering_uuid)
            )
            assert offering is not None  # checked by the bus
            size = offering.disk_size
        data = flows.CreateDataVolumeData(
            volume_uuid=new_uuid(),
            name=msg.name,
            description=msg.description,
            size=size,
            disk_offering_uuid=msg.disk_offering_uuid,
            primary_storage_uuid=msg.primary_storage_uuid,
        )
        return await self._create(msg, data)

    @handles(CreateDataVolumeFromVolumeTemplate)
    async def create_from_template(self, msg: CreateDataVolumeFromVolumeTemplate) -> dict[str, Any]:
        def read(session: Session) -> int:
            image = session.get(ImageVO, msg.image_uuid)
            assert image is not None  # checked by the bus
            if image.media_type != "DataVolumeTemplate":
                raise argerr(
                    f"image {image.name} is a {image.media_type}, not a DataVolumeTemplate"
                )
            if image.status != READY:
                raise operr(f"image {image.name} is {image.status}, not Ready")
            return image.size

        size = await self.node.db.run(read)
        data = flows.CreateDataVolumeData(
            volume_uuid=new_uuid(),
            name=msg.name,
            description=msg.description,
            size=size,
            image_uuid=msg.image_uuid,
            primary_storage_uuid=msg.primary_storage_uuid,
        )
        return await self._create(msg, data)

    async def _create(self, msg: Any, data: flows.CreateDataVolumeData) -> dict[str, Any]:
        await self._run(flows.CREATE, data, f"cannot create data volume {msg.name}")
        tags = self.node.plugin(TagPlugin)

        def tag(session: Session) -> dict[str, Any]:
            tags.create_tags_from_message(session, msg, VolumeVO.resource_type, data.volume_uuid)
            row = session.get(VolumeVO, data.volume_uuid)
            assert row is not None
            return row.to_inventory()

        return await self.node.db.run(tag)

    # -- attach and detach ------------------------------------------------------------

    @handles(AttachDataVolumeToVm)
    async def attach(self, msg: AttachDataVolumeToVm) -> dict[str, Any]:
        max_num = self._config("kvm", global_config.DATA_VOLUME_MAX_NUM.name)
        async with volume_and_vm_locked(self.node, msg.volume_uuid, msg.vm_instance_uuid):

            def check(session: Session) -> int:
                volume = session.get(VolumeVO, msg.volume_uuid)
                vm = session.get(VmInstanceVO, msg.vm_instance_uuid)
                assert volume is not None and vm is not None  # checked by the bus
                _check_data_volume(volume, "attach")
                if volume.vm_instance_uuid == vm.uuid:
                    raise operr(f"volume {volume.name} is attached to VM {vm.name} already")
                if volume.vm_instance_uuid:
                    raise operr(
                        f"volume {volume.name} is attached to VM {volume.vm_instance_uuid}; "
                        "detach it first"
                    )
                if vm.type != "UserVm":
                    raise operr(f"VM {vm.name} is a {vm.type}: data volumes go on user VMs")
                if vm.state not in ATTACHABLE_VM_STATES:
                    raise operr(
                        f"VM {vm.name} is {vm.state}: a data volume is attached to a Running "
                        "or Stopped VM"
                    )
                root = session.get(VolumeVO, vm.root_volume_uuid) if vm.root_volume_uuid else None
                if root is not None and root.primary_storage_uuid != volume.primary_storage_uuid:
                    raise operr(
                        f"volume {volume.name} is on another primary storage than VM "
                        f"{vm.name}'s root volume"
                    )
                device_id = free_device_id(session, vm.uuid, max_num)
                if device_id is None:
                    raise operr(
                        f"VM {vm.name} has {max_num} data volumes already (kvm.dataVolume.maxNum)"
                    )
                return device_id

            device_id = await self.node.db.run(check)
            data = flows.VolumeVmData(
                volume_uuid=msg.volume_uuid, vm_uuid=msg.vm_instance_uuid, device_id=device_id
            )
            await self._run(
                flows.ATTACH,
                data,
                f"cannot attach volume {msg.volume_uuid} to VM {msg.vm_instance_uuid}",
            )
        return await self._inventory(msg.volume_uuid)

    @handles(DetachDataVolumeFromVm)
    async def detach(self, msg: DetachDataVolumeFromVm) -> dict[str, Any]:
        async with volume_locked(self.node, msg.uuid) as site:
            if site.volume["type"] != DATA:
                raise operr(f"volume {site.volume['name']} is a root volume: it cannot be detached")
            if site.vm is None:
                raise operr(f"volume {site.volume['name']} is not attached")
            if msg.vm_uuid and msg.vm_uuid != site.vm["uuid"]:
                raise operr(
                    f"volume {site.volume['name']} is attached to VM {site.vm['name']}, "
                    f"not {msg.vm_uuid}"
                )
            await self._detach(site)
        return await self._inventory(msg.uuid)

    async def _detach(self, site: VolumeSite) -> None:
        assert site.vm is not None
        if site.vm["state"] not in (*ATTACHABLE_VM_STATES, "Destroyed", "Created", "Paused"):
            raise operr(
                f"VM {site.vm['name']} is {site.vm['state']}: wait until it is Running or "
                "Stopped to detach a volume"
            )
        data = flows.VolumeVmData(
            volume_uuid=site.uuid, vm_uuid=site.vm["uuid"], device_id=site.volume["deviceId"]
        )
        await self._run(
            flows.DETACH,
            data,
            f"cannot detach volume {site.volume['name']} from VM {site.vm['name']}",
        )

    # -- resize (core.volume.resize) ------------------------------------------------------

    @handles(ResizeRootVolume)
    async def resize_root_volume(self, msg: ResizeRootVolume) -> dict[str, Any]:
        return await resize.resize_volume(self.node, msg.uuid, msg.size, "Root")

    @handles(ResizeDataVolume)
    async def resize_data_volume(self, msg: ResizeDataVolume) -> dict[str, Any]:
        return await resize.resize_volume(self.node, msg.uuid, msg.size, "Data")

    # -- delete, recover, expunge -----------------------------------------------------

    @handles(DeleteDataVolume)
    async def delete(self, msg: DeleteDataVolume) -> None:
        policy = self._config(global_config.CATEGORY, global_config.DELETION_POLICY.name)
        async with volume_locked(self.node, msg.uuid) as site:
            volume = site.volume
            if volume["type"] != DATA:
                raise operr(
                    f"volume {volume['name']} is a root volume: it goes with its VM "
                    "(DestroyVmInstance)"
                )
            if volume["status"] == DELETED:
                return
            if site.vm is not None:
                await self._detach(site)
            if policy == "Direct":
                await self._expunge(volume)
                return

            def mark(session: Session) -> None:
                row = session.get(VolumeVO, msg.uuid)
                assert row is not None
                row.status = DELETED

            await self.node.db.run(mark)

    @handles(RecoverDataVolume)
    async def recover(self, msg: RecoverDataVolume) -> dict[str, Any]:
        async with volume_locked(self.node, msg.uuid):

            def recover(session: Session) -> dict[str, Any]:
                row = session.get(VolumeVO, msg.uuid)
                assert row is not None
                if row.status != DELETED:
                    raise operr(f"volume {row.name} is {row.status}, not Deleted")
                row.status = READY
                session.flush()
                return row.to_inventory()

            return await self.node.db.run(recover)

    @handles(ExpungeDataVolume)
    async def expunge(self, msg: ExpungeDataVolume) -> None:
        async with volume_locked(self.node, msg.uuid) as site:
            if site.volume["type"] != DATA:
                raise operr(f"volume {site.volume['name']} is a root volume: it goes with its VM")
            if site.volume["status"] != DELETED:
                raise operr(
                    f"volume {site.volume['name']} is {site.volume['status']}: delete it "
                    "first (DeleteDataVolume)"
                )
            await self._expunge(site.volume)

    async def _expunge(self, volume: dict[str, Any]) -> None:
        await self._run(
            flows.EXPUNGE,
            flows.VolumeData(volume_uuid=volume["uuid"]),
            f"cannot expunge volume {volume['name']}",
        )
        await self.node.db.run(lambda s: delete_all_tags(s, [volume["uuid"]]))


def _check_data_volume(volume: VolumeVO, operation: str) -> None:
    if volume.type != DATA:
        raise operr(f"volume {volume.name} is a root volume: only data volumes {operation}")
    if volume.status != READY:
        raise operr(f"volume {volume.name} is {volume.status}, not Ready")
    if volume.state != "Enabled":
        raise operr(f"volume {volume.name} is {volume.state}")
