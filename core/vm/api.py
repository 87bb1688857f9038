from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.vm.models import VmInstanceVO

STRATEGIES = ("InstantStart", "JustCreate", "CreateStopped")


class _VmOperation(ApiMessage):
    uuid: str = param(required=True, resource_type="VmInstanceVO")

    def sync_signature(self) -> str:
        return f"Vm-{self.uuid}"


class CreateVmInstance(ApiMessage):
    """Create a VM from an image and an instance offering, and (by default) start it."""

    tag_resource_type: ClassVar[str] = "VmInstanceVO"
    timeout = 3600.0
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    instance_offering_uuid: str = param(required=True, resource_type="InstanceOfferingVO")
    image_uuid: str = param(required=True, resource_type="ImageVO")
    l3_network_uuids: list[str] = param(
        default=[], resource_type="L3NetworkVO", description="L3 networks, default first"
    )
    data_disk_offering_uuids: list[str] = param(
        default=[],
        resource_type="DiskOfferingVO",
        description="a data volume of each offering's size, attached as vdb, vdc...",
    )
    host_uuid: str = param(resource_type="HostVO", description="run it on this host")
    cluster_uuid: str = param(resource_type="ClusterVO")
    zone_uuid: str = param(resource_type="ZoneVO")
    strategy: str = param(default="InstantStart", valid_values=STRATEGIES)


class StartVmInstance(_VmOperation):
    """Start a stopped VM."""

    timeout = 600.0


class StopVmInstance(_VmOperation):
    """Stop a VM: grace (ACPI, then power off after the timeout), cold (power off) or force."""

    timeout = 600.0
    type: str = param(default="grace", valid_values=("grace", "cold", "force"))
    stop_timeout: int = param(default=60, number_range=(1, 3600), description="seconds")


class RebootVmInstance(_VmOperation):
    """Reboot a running VM."""

    timeout = 600.0


class PauseVmInstance(_VmOperation):
    """Pause a running VM (its memory stays; it runs no instruction)."""


class ResumeVmInstance(_VmOperation):
    """Resume a paused VM."""


class DestroyVmInstance(_VmOperation):
    """Destroy a VM; vm.deletionPolicy says whether it can be recovered."""

    timeout = 600.0


class RecoverVmInstance(_VmOperation):
    """Bring a Destroyed VM back, Stopped."""


class ExpungeVmInstance(_VmOperation):
    """Remove a Destroyed VM for good, with its root volume."""

    timeout = 600.0


class GetVmConsoleAddress(_VmOperation):
    """Where a VM's serial console is: its pty on the host, and its log file."""

    read_only = True


class ChangeInstanceOffering(ApiMessage):
    """Give a stopped VM the CPU and memory of another instance offering (checked against
    its host at the next start)."""

    vm_instance_uuid: str = param(required=True, resource_type="VmInstanceVO")
    instance_offering_uuid: str = param(required=True, resource_type="InstanceOfferingVO")

    def sync_signature(self) -> str:
        return f"Vm-{self.vm_instance_uuid}"


class QueryVmInstance(QueryMessage):
    """Query VMs."""

    model = VmInstanceVO
