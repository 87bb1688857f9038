"""What a VM operation's flows share: ZStack's VmInstanceSpec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


def human_size(size: int) -> str:
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor}{unit}"
    return f"{size}B"


@dataclass
class VmInstanceSpec:
    vm_uuid: str
    name: str
    cpu_num: int
    memory_size: int
    image_uuid: str | None = None
    l3_network_uuids: list[str] = field(default_factory=list)
    hypervisor_type: str | None = None
    zone_uuid: str | None = None
    cluster_uuid: str | None = None
    host_uuid: str | None = None
    """Designated by the caller."""
    avoid_host_uuids: list[str] = field(default_factory=list)
    last_host_uuid: str | None = None
    disk_size: int = 0
    """Bytes the root volume needs on primary storage (the image's actual size)."""
    data_disk_sizes: list[int] = field(default_factory=list)
    """Bytes of each data volume a create makes with the VM (``vdb``, ``vdc``...)."""
    data_disk_offering_uuids: list[str] = field(default_factory=list)
    """The disk offerings those sizes come from (same order)."""
    static_ips: dict[str, str] = field(default_factory=dict)
    """L3 network uuid -> the address a ``staticIp`` tag asks for."""
    nics: list[dict[str, Any]] = field(default_factory=list)
    """The VM's NICs (``core.network.l3.nics.nics_of``), once allocated."""
    dest_host_uuid: str | None = None
    """The host the VM is being started on (set before resources are instantiated)."""
    made_by_this_operation: list[str] = field(default_factory=list)
    """Resources an extension made for this operation alone (e.g. an appliance), which
    its release may take away again if nothing else uses them."""

    @property
    def default_l3_network_uuid(self) -> str | None:
        return self.l3_network_uuids[0] if self.l3_network_uuids else None

    def describe(self) -> dict[str, str]:
        """Values for allocation error messages."""
        designated = ", ".join(
            f"{k} {v}"
            for k, v in (
                ("host", self.host_uuid),
                ("cluster", self.cluster_uuid),
                ("zone", self.zone_uuid),
            )
            if v
        )
        return {
            "cpu": str(self.cpu_num),
            "memory": human_size(self.memory_size),
            "image": str(self.image_uuid),
            "disk": human_size(self.disk_size),
            "designated": designated or "none",
        }
