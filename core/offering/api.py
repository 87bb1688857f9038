from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.offering.models import DiskOfferingVO, InstanceOfferingVO

MiB = 1024**2
DISK_SIZE_RANGE = (MiB, 2**50)
"""A data volume is 1 MiB to 1 PiB (bytes)."""


class CreateInstanceOffering(ApiMessage):
    """Create a VM size: CPUs and memory (bytes)."""

    tag_resource_type: ClassVar[str] = "InstanceOfferingVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    cpu_num: int = param(required=True, number_range=(1, 1024))
    memory_size: int = param(
        required=True, number_range=(16 * MiB, 2**50), description="bytes, at least 16 MiB"
    )


class DeleteInstanceOffering(ApiMessage):
    """Delete an offering (VMs made from it keep their size)."""

    uuid: str = param(required=True, resource_type="InstanceOfferingVO")


class QueryInstanceOffering(QueryMessage):
    """Query instance offerings."""

    model = InstanceOfferingVO


class CreateDiskOffering(ApiMessage):
    """Create a data volume size (bytes)."""

    tag_resource_type: ClassVar[str] = "DiskOfferingVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    disk_size: int = param(
        required=True, number_range=DISK_SIZE_RANGE, description="bytes, at least 1 MiB"
    )


class DeleteDiskOffering(ApiMessage):
    """Delete a disk offering (volumes made from it keep their size)."""

    uuid: str = param(required=True, resource_type="DiskOfferingVO")


class QueryDiskOffering(QueryMessage):
    """Query disk offerings."""

    model = DiskOfferingVO
