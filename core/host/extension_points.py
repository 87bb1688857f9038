"""Extension points of the host area (ZStack's KVMHostConnectExtensionPoint and
HostReservedCapacityExtensionPoint)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from contracts import kvm
from core.config.definitions import GlobalConfigDef
from core.kernel.rest import AgentClient


@dataclass
class HostConnectContext:
    host_uuid: str
    host_name: str
    cluster_uuid: str
    """So a plugin can ask what is attached to the host's cluster (its L2 networks)."""
    hypervisor_type: str
    facts: kvm.HostFactsRsp
    """What the agent answered to /host/connect."""
    agent: AgentClient
    new_host: bool
    """True while the host is being added (not a reconnect)."""


class KVMHostConnectExtensionPoint(ABC):
    """Called while a KVM host connects; raising OperationError stops the connect."""

    @abstractmethod
    async def kvm_host_connected(self, context: HostConnectContext) -> None: ...


@dataclass(frozen=True)
class ReservedHostCapacity:
    cpu: int = 0
    memory: int = 0
    """Bytes."""
    held_by: tuple[str, ...] = ()
    """What holds it back, as a user sets it (e.g. ``kvm.reservedMemory=1G``), for the
    allocator's refusals."""

    def __add__(self, other: ReservedHostCapacity) -> ReservedHostCapacity:
        return ReservedHostCapacity(
            self.cpu + other.cpu, self.memory + other.memory, self.held_by + other.held_by
        )


class HostReservedCapacityExtensionPoint(ABC):
    """Capacity of a host never given to VMs (e.g. kvm.reservedMemory for the agent)."""

    @abstractmethod
    def reserved_host_capacity(self, hypervisor_type: str) -> ReservedHostCapacity: ...

    def reserved_capacity_configs(self) -> list[GlobalConfigDef]:
        """The global configs the reservation is read from: a change to one of them is
        applied to every host's capacity at once."""
        return []
