"""The flows volumes put into a VM's chains: a new VM's data disks (``createVm``) and its
data volumes let go when it is expunged (``expungeVm``: they are kept, detached)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import kvm
from core.host.plugin import HostPlugin
from core.kernel.db import new_uuid
from core.kernel.errors import operr
from core.kernel.flow import Flow, NoRollbackFlow
from core.storage.capacity import reserve_primary_capacity, return_primary_capacity
from core.volume.files import DATA, data_volume_path
from core.volume.models import VolumeVO


class VmAllocateDataVolumesFlow(Flow):
    """One empty data volume per size the caller asked for (its disk offerings), on the
    root volume's primary storage, attached as ``vdb``, ``vdc``...  The rows and their
    room go in one transaction (found again by the VM's uuid, so a rollback after a
    crash needs nothing written down), then the files."""

    def skip(self, data: Any) -> bool:
        return not data.spec.data_disk_sizes

    async def run(self, data: Any) -> None:
        spec, ps, host = data.spec, data.primary_storage, data.host
        assert ps is not None and host is not None
        sizes: list[int] = spec.data_disk_sizes

        def allocate(session: Session) -> list[tuple[str, str, int]]:
            made = []
            for device_id, size in enumerate(sizes, start=1):
                if not reserve_primary_capacity(session, ps["uuid"], size):
                    raise operr(
                        f"primary storage {ps['uuid']} has not {size} bytes free for data "
                        f"disk {device_id} of VM {spec.name}"
                    )
                uuid = new_uuid()
                path = data_volume_path(ps["url"], uuid)
                session.add(
                    VolumeVO(
                        uuid=uuid,
                        name=f"DATA-{device_id}-for-{spec.name}",
                        type=DATA,
                        vm_instance_uuid=spec.vm_uuid,
                        device_id=device_id,
                        primary_storage_uuid=ps["uuid"],
                        disk_offering_uuid=(spec.data_disk_offering_uuids or [None] * len(sizes))[
                            device_id - 1
                        ],
                        install_path=path,
                        size=size,
                        status="Creating",
                    )
                )
                made.append((uuid, path, size))
            return made

        made = await data.node.db.run(allocate)
        agent = await data.node.plugin(HostPlugin).agent_of(host["uuid"])
        for uuid, path, size in made:
            answer = await agent.send(
                kvm.CreateVolumeCmd(install_path=path, size=size), timeout=120
            )

            def ready(session: Session, uuid: str = uuid, actual: int = answer.actual_size) -> None:
                row = session.get(VolumeVO, uuid)
                assert row is not None
                row.status, row.actual_size = "Ready", actual

            await data.node.db.run(ready)

    async def rollback(self, data: Any) -> None:
        spec, host = data.spec, data.host
        if host is None:
            return

        def read(session: Session) -> list[tuple[str, str]]:
            return [
                (v.uuid, v.install_path or "")
                for v in session.scalars(
                    select(VolumeVO).where(
                        VolumeVO.vm_instance_uuid == spec.vm_uuid, VolumeVO.type == DATA
                    )
                )
            ]

        agent = await data.node.plugin(HostPlugin).agent_of(host["uuid"])
        for uuid, path in await data.node.db.run(read):
            if path:
                await agent.send(kvm.DeleteVolumeCmd(install_path=path))

            def forget(session: Session, uuid: str = uuid) -> None:
                row = session.get(VolumeVO, uuid)
                if row is None:
                    return
                if row.primary_storage_uuid:
                    return_primary_capacity(session, row.primary_storage_uuid, row.size)
                session.delete(row)

            await data.node.db.run(forget)


class VmDetachDataVolumesFlow(NoRollbackFlow):
    """An expunged VM's data volumes stay, detached (its domain is gone already)."""

    async def run(self, data: Any) -> None:
        vm_uuid = data.vm["uuid"]

        def detach(session: Session) -> None:
            for row in session.scalars(
                select(VolumeVO).where(VolumeVO.vm_instance_uuid == vm_uuid, VolumeVO.type == DATA)
            ):
                row.vm_instance_uuid, row.device_id = None, 0
                row.last_vm_instance_uuid = vm_uuid

        await data.node.db.run(detach)
