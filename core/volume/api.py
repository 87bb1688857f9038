from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.offering.api import DISK_SIZE_RANGE
from core.volume.models import VolumeVO


class _VolumeOperation(ApiMessage):
    """An operation on one volume: its handler holds the volume's queue, then its VM's
    (core.volume.spi.volume_locked), so the message itself has no sync signature."""

    uuid: str = param(required=True, resource_type="VolumeVO")


class CreateDataVolume(ApiMessage):
    """Create an empty data volume, of a disk offering's size or of ``diskSize`` bytes."""

    tag_resource_type: ClassVar[str] = "VolumeVO"
    timeout = 600.0
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    disk_offering_uuid: str = param(resource_type="DiskOfferingVO")
    disk_size: int = param(number_range=DISK_SIZE_RANGE, description="bytes (no offering)")
    primary_storage_uuid: str = param(
        resource_type="PrimaryStorageVO", description="default: the one with the most room"
    )


class CreateDataVolumeFromVolumeTemplate(ApiMessage):
    """Create a data volume from an image (a data volume template): a copy-on-write
    overlay on the image's cache on the primary storage."""

    tag_resource_type: ClassVar[str] = "VolumeVO"
    timeout = 3600.0
    image_uuid: str = param(required=True, resource_type="ImageVO")
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    primary_storage_uuid: str = param(
        resource_type="PrimaryStorageVO", description="default: the one with the most room"
    )


class AttachDataVolumeToVm(ApiMessage):
    """Attach a data volume to a VM: hot-plugged if the VM runs, on its next start if not."""

    timeout = 600.0
    volume_uuid: str = param(required=True, resource_type="VolumeVO")
    vm_instance_uuid: str = param(required=True, resource_type="VmInstanceVO")


class DetachDataVolumeFromVm(_VolumeOperation):
    """Detach a data volume from its VM (hot-unplugged if the VM runs: the guest must let
    the disk go)."""

    timeout = 600.0
    vm_uuid: str = param(
        resource_type="VmInstanceVO", description="the VM it must be attached to (a check)"
    )


class DeleteDataVolume(_VolumeOperation):
    """Delete a data volume (detached first if attached), as volume.deletionPolicy says:
    Direct expunges it at once, Delay keeps it Deleted (recoverable) for
    volume.expungePeriod, Never keeps it until ExpungeDataVolume."""

    timeout = 600.0


class RecoverDataVolume(_VolumeOperation):
    """Bring back a Deleted data volume (not yet expunged)."""


class ExpungeDataVolume(_VolumeOperation):
    """Remove a Deleted data volume for good: its files, its snapshots, its row."""

    timeout = 600.0


class QueryVolume(QueryMessage):
    """Query volumes: root and data, with size, actual size, format, path and VM."""

    model = VolumeVO
