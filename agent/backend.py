"""The backend the agent's commands call: libvirt on a real host, or the simulator.

Everything is async: a backend that must block (libvirt, qemu-img) does so in a
thread.  Failures raise :class:`agentkit.errors.AgentError` with a message meant for
the caller.  VM state changes - whoever caused them - go to the listener set by
:meth:`Backend.set_state_listener`, which the agent turns into REPORT_VM_STATE.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from agent.console import ConsoleStream, OpenConsoles
from agent.network.base import NetworkDriver
from agentkit.errors import AgentError
from contracts.kvm import DEFAULT_STALL_TIMEOUT, DOMAIN_PREFIX, Acceleration, disk_target

if TYPE_CHECKING:
    from agent.lab_inventory import HostObject, Removal

StateListener = Callable[[str, str], None]
"""Called on the event loop with ``(vmUuid, state)``; must not block."""

ProgressCallback = Callable[[int, int], None]
"""Called with ``(bytes done, bytes in total or 0 if unknown)``; must not block."""

STOP_TYPES = ("grace", "cold", "force")


def domain_name(vm_uuid: str) -> str:
    return DOMAIN_PREFIX + vm_uuid


def vm_uuid_of(name: str) -> str | None:
    """The VM uuid a domain name stands for, or None if the project does not own it."""
    if name.startswith(DOMAIN_PREFIX) and len(name) > len(DOMAIN_PREFIX):
        return name[len(DOMAIN_PREFIX) :]
    return None


@dataclass(frozen=True)
class NicSpec:
    mac: str
    bridge_name: str
    device_name: str = ""
    virtual_port_type: str = ""
    """libvirt's ``<virtualport type>`` (contracts.kvm.VIRTUAL_PORT_TYPES): "" for a port
    of a Linux bridge; otherwise libvirt plugs the tap into ``bridge_name`` itself."""
    vlan_id: int | None = None
    """An access port's VLAN tag (only with a virtual port type), or None."""


@dataclass(frozen=True)
class DataVolumeSpec:
    """A data volume as a VM's disk (contracts.kvm.DataVolumeTO)."""

    uuid: str
    install_path: str
    device_id: int
    format: str = "qcow2"

    @property
    def target(self) -> str:
        return disk_target(self.device_id)


@dataclass(frozen=True)
class VolumeOp:
    """What a command on a volume's chain names (contracts.kvm.VolumeFileOp)."""

    storage_path: str
    install_path: str
    vm_uuid: str = ""
    device_id: int = 0

    @property
    def target(self) -> str:
        return disk_target(self.device_id)


@dataclass(frozen=True)
class SnapshotResult:
    install_path: str
    new_install_path: str
    size: int
    actual_size: int


@dataclass(frozen=True)
class VmSpec:
    vm_uuid: str
    vm_name: str
    cpu_num: int
    memory_size: int  # bytes
    root_volume_path: str
    root_volume_format: str = "qcow2"
    nics: tuple[NicSpec, ...] = ()
    console_log_path: str = ""
    acceleration: str = ""  # "kvm" | "tcg" | "" (the probe decides)
    timeout: float = 60.0
    smbios_serial: str = ""
    """The SMBIOS system serial the guest reads ("": none is set)."""
    data_volumes: tuple[DataVolumeSpec, ...] = ()


@dataclass(frozen=True)
class HostFacts:
    hostname: str
    libvirt_version: str
    qemu_img_version: str
    cpu_num: int
    cpu_sockets: int
    cpu_model_name: str
    cpu_flags: tuple[str, ...]
    total_memory: int
    acceleration: Acceleration
    hypervisor_type: str


@dataclass(frozen=True)
class Capacity:
    cpu_num: int
    total_memory: int
    used_memory: int
    free_memory: int


@dataclass(frozen=True)
class VmConsole:
    pty: str
    console_log_path: str


@dataclass(frozen=True)
class ImageInfo:
    format: str
    size: int  # virtual size, bytes
    actual_size: int  # bytes on disk
    backing_file: str = ""


@dataclass(frozen=True)
class VolumeInfo:
    install_path: str
    size: int
    actual_size: int


@dataclass(frozen=True)
class DownloadResult:
    install_path: str
    format: str
    size: int
    actual_size: int
    md5sum: str


@dataclass(frozen=True)
class StorageCapacity:
    total: int
    available: int
    """Bytes."""


class Backend(ABC):
    hypervisor_type: str = "KVM"
    network: NetworkDriver
    """Bridges, host NAT and appliances (agent.network): set by each backend."""

    def __init__(self) -> None:
        self._listener: StateListener | None = None
        self.consoles = OpenConsoles()
        """The console each VM has open (one viewer per VM); closed by :meth:`close`."""
        self.lab_dir: Path | None = None
        """The data dir of the node this agent serves (:meth:`set_lab_dir`)."""

    def set_data_dir(self, data_dir: Path) -> None:
        """The agent's data dir: appliance directories go under ``<data_dir>/appliances``."""
        self.network.data_dir = Path(data_dir)

    def set_lab(self, lab: str) -> None:
        """The identity of the lab this agent serves (:mod:`agent.lab`): what the
        network driver makes on the host carries it."""
        self.network.lab = lab

    def set_lab_dir(self, lab_dir: Path) -> None:
        """The data dir of the node this agent serves: what under it is the lab's."""
        self.lab_dir = Path(lab_dir).absolute()

    def set_state_listener(self, listener: StateListener | None) -> None:
        self._listener = listener

    def _report(self, vm_uuid: str, state: str) -> None:
        if self._listener is not None:
            self._listener(vm_uuid, state)

    # -- reconciliation (agent.lab_inventory) --------------------------------------------
    async def lab_inventory(self, storage_paths: list[str]) -> list[HostObject]:
        """Every object of this agent's lab on the host (contracts.kvm.LAB_INVENTORY)."""
        raise AgentError(f"the {self.hypervisor_type} backend cannot list the lab's objects")

    async def lab_remove(self, objects: list[tuple[str, str]], storage_paths: list[str]) -> Removal:
        """Remove the named objects that are this lab's now (contracts.kvm.LAB_REMOVE)."""
        raise AgentError(f"the {self.hypervisor_type} backend cannot remove the lab's objects")

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Open connections, start probes; called once before serving."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what :meth:`start` took; called once at shutdown."""

    # -- host ------------------------------------------------------------------
    @abstractmethod
    async def connect(self, host_uuid: str, report_url: str) -> HostFacts: ...

    @abstractmethod
    async def ping(self) -> None:
        """Raise if the backend cannot serve (e.g. libvirt unreachable)."""

    @abstractmethod
    async def capacity(self) -> Capacity: ...

    # -- VMs -------------------------------------------------------------------
    @abstractmethod
    async def vm_start(self, spec: VmSpec) -> str:
        """Define and start; the resulting state."""

    @abstractmethod
    async def vm_stop(self, vm_uuid: str, stop_type: str, timeout: float) -> str: ...

    @abstractmethod
    async def vm_reboot(self, vm_uuid: str, timeout: float) -> str: ...

    @abstractmethod
    async def vm_pause(self, vm_uuid: str) -> str: ...

    @abstractmethod
    async def vm_resume(self, vm_uuid: str) -> str: ...

    @abstractmethod
    async def vm_destroy(self, vm_uuid: str) -> None: ...

    @abstractmethod
    async def vm_sync(self) -> dict[str, str]:
        """vmUuid -> state for every domain the project owns."""

    @abstractmethod
    async def vm_console(self, vm_uuid: str) -> VmConsole: ...

    @abstractmethod
    async def vm_console_open(self, vm_uuid: str) -> ConsoleStream:
        """Open a running (or paused) VM's serial console for one viewer, through
        :attr:`consoles`: a viewer already there is taken over."""

    # -- volumes and images ----------------------------------------------------
    @abstractmethod
    async def volume_create(
        self, install_path: str, backing_file: str, size: int, fmt: str = "qcow2"
    ) -> VolumeInfo: ...

    @abstractmethod
    async def volume_delete(
        self, install_path: str, storage_path: str = "", keep_if_backing: tuple[str, ...] = ()
    ) -> None:
        """Delete the file (see contracts.kvm.VOLUME_DELETE); with ``keep_if_backing``,
        refuse if a chain of those files, or a running domain's disk, holds it."""

    # -- data volumes and chains (contracts.kvm "data volumes, snapshots...") ----------
    async def vm_attach_volume(self, vm_uuid: str, volume: DataVolumeSpec) -> None:
        """Hot-plug ``volume`` into the VM's running domain (nothing if not running)."""
        raise AgentError(f"the {self.hypervisor_type} backend cannot attach volumes")

    async def vm_detach_volume(self, vm_uuid: str, volume: DataVolumeSpec, timeout: float) -> None:
        """Unplug ``volume`` from the running domain, waiting up to ``timeout`` seconds."""
        raise AgentError(f"the {self.hypervisor_type} backend cannot detach volumes")

    async def volume_snapshot(
        self, op: VolumeOp, new_install_path: str, full: bool
    ) -> SnapshotResult:
        raise AgentError(f"the {self.hypervisor_type} backend cannot snapshot volumes")

    async def volume_rebase(self, op: VolumeOp, backing_file: str) -> str:
        """The file's backing file afterwards."""
        raise AgentError(f"the {self.hypervisor_type} backend cannot rebase volumes")

    async def volume_resize(self, op: VolumeOp, size: int) -> int:
        """The volume's virtual size afterwards."""
        raise AgentError(f"the {self.hypervisor_type} backend cannot resize volumes")

    async def volume_chain(
        self, storage_path: str, install_paths: list[str]
    ) -> tuple[dict[str, list[str]], list[str]]:
        """Each file's backing files (nearest first), and the files missing."""
        raise AgentError(f"the {self.hypervisor_type} backend cannot read volume chains")

    async def volume_export(
        self,
        storage_path: str,
        install_path: str,
        target_path: str,
        progress_cb: ProgressCallback | None = None,
    ) -> DownloadResult:
        raise AgentError(f"the {self.hypervisor_type} backend cannot export volumes")

    @abstractmethod
    async def image_download(
        self,
        url: str,
        install_path: str,
        checksum: str,
        progress_cb: ProgressCallback | None = None,
        stall_timeout: float = DEFAULT_STALL_TIMEOUT,
    ) -> DownloadResult: ...

    @abstractmethod
    async def image_info(self, install_path: str) -> ImageInfo: ...

    @abstractmethod
    async def file_delete(self, path: str) -> None: ...

    @abstractmethod
    async def storage_init(self, path: str) -> StorageCapacity:
        """Make a storage directory (idempotent) and measure its file system."""
