"""Host capacity: totals from the agent's facts, availability derived from the VMs.

A reservation is one conditional UPDATE (``available >= wanted``), so two
concurrent allocations can never both take the last free memory.  A change of
the settings totals derive from (host.cpu.overProvisioning.ratio, a reservation
such as kvm.reservedMemory) moves every host's totals, and its available
capacity by as much, in one UPDATE each (:func:`apply_capacity_settings`): what
running VMs and allocations under way hold stays counted.  Available capacity may
then be below zero (the host is over-committed by that much, and takes no VM
until enough is given back).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session

from core.config.plugin import GlobalConfigPlugin
from core.host import global_config
from core.host.extension_points import HostReservedCapacityExtensionPoint, ReservedHostCapacity
from core.host.models import HostVO
from core.kernel.db import InTransaction
from core.vm.models import VmInstanceVO

# Tables, for Core statements on hot paths (see Base.inventory_columns).
_hosts = HostVO.__table__

# VM states that hold capacity on their host (ZStack returns it on Stopped/Destroyed).
HOLDING_STATES = (
    "Starting",
    "Running",
    "Stopping",
    "Rebooting",
    "Pausing",
    "Paused",
    "Resuming",
    "Migrating",
    "Unknown",
    "Crashed",
)


_COUNTED_STATES = (*HOLDING_STATES, "Destroying")
"""What a recompute counts: a VM being destroyed holds its capacity until the destroy
chain gives it back, which also clears the row's host (VmReturnHostFlow)."""


def cpu_ratio(node: Any) -> int:
    """host.cpu.overProvisioning.ratio."""
    configs = node.plugin(GlobalConfigPlugin)
    return int(
        configs.value(global_config.CATEGORY, global_config.CPU_OVER_PROVISIONING_RATIO.name)
    )


def reserved_capacity(node: Any, hypervisor_type: str) -> ReservedHostCapacity:
    """What every HostReservedCapacityExtensionPoint holds back on a host of this type."""
    reserved = ReservedHostCapacity()
    for ext in node.registry.extensions(HostReservedCapacityExtensionPoint):
        reserved += ext.reserved_host_capacity(hypervisor_type)
    return reserved


def capacity_configs(node: Any) -> set[str]:
    """Identities of the global configs host totals derive from."""
    found = {global_config.CPU_OVER_PROVISIONING_RATIO.identity}
    for ext in node.registry.extensions(HostReservedCapacityExtensionPoint):
        found.update(d.identity for d in ext.reserved_capacity_configs())
    return found


def _totals(
    cpu_num: int, physical_memory: int, ratio: int, reserved: ReservedHostCapacity
) -> tuple[int, int]:
    return max(cpu_num * ratio - reserved.cpu, 0), max(physical_memory - reserved.memory, 0)


def refresh_capacity(
    session: Session,
    host: HostVO,
    cpu_num: int,
    cpu_sockets: int,
    physical_memory: int,
    ratio: int,
    reserved: ReservedHostCapacity,
) -> None:
    """Set a host's totals from its facts and recompute what its VMs leave available."""
    used_cpu, used_memory = session.execute(
        select(
            func.coalesce(func.sum(VmInstanceVO.cpu_num), 0),
            func.coalesce(func.sum(VmInstanceVO.memory_size), 0),
        ).where(VmInstanceVO.host_uuid == host.uuid, VmInstanceVO.state.in_(_COUNTED_STATES))
    ).one()
    host.cpu_num = cpu_num
    host.cpu_sockets = cpu_sockets
    host.total_physical_memory = physical_memory
    host.total_cpu_capacity, host.total_memory_capacity = _totals(
        cpu_num, physical_memory, ratio, reserved
    )
    host.available_cpu_capacity = host.total_cpu_capacity - int(used_cpu)
    host.available_memory_capacity = host.total_memory_capacity - int(used_memory)


# Built once: a reservation runs for every VM created or started.
_RESERVE = (
    update(_hosts)
    .where(
        _hosts.c.uuid == bindparam("host"),
        _hosts.c.available_cpu_capacity >= bindparam("cpu"),
        _hosts.c.available_memory_capacity >= bindparam("memory"),
    )
    .values(
        available_cpu_capacity=_hosts.c.available_cpu_capacity - bindparam("cpu"),
        available_memory_capacity=_hosts.c.available_memory_capacity - bindparam("memory"),
    )
)


def reserve_capacity(session: InTransaction, host_uuid: str, cpu: int, memory: int) -> bool:
    """Take capacity on a host atomically; False if it does not have enough."""
    result = session.execute(_RESERVE, {"host": host_uuid, "cpu": cpu, "memory": memory})
    return result.rowcount == 1  # type: ignore[attr-defined]


def take_capacity(session: InTransaction, host_uuid: str, cpu: int, memory: int) -> None:
    """Count what a VM already running holds (one started outside the project), room or
    not: the host may end over-committed, and takes no VM until enough is given back."""
    session.execute(
        update(_hosts)
        .where(_hosts.c.uuid == host_uuid)
        .values(
            available_cpu_capacity=_hosts.c.available_cpu_capacity - cpu,
            available_memory_capacity=_hosts.c.available_memory_capacity - memory,
        )
    )


def return_capacity(session: InTransaction, host_uuid: str, cpu: int, memory: int) -> None:
    """Give capacity back, never above the host's totals (portable: no LEAST/MIN)."""
    cpu_back = HostVO.available_cpu_capacity + cpu
    memory_back = HostVO.available_memory_capacity + memory
    session.execute(
        update(HostVO)
        .where(HostVO.uuid == host_uuid)
        .values(
            available_cpu_capacity=case(
                (cpu_back > HostVO.total_cpu_capacity, HostVO.total_cpu_capacity), else_=cpu_back
            ),
            available_memory_capacity=case(
                (memory_back > HostVO.total_memory_capacity, HostVO.total_memory_capacity),
                else_=memory_back,
            ),
        )
    )


_HOST_FACTS = select(
    _hosts.c.uuid, _hosts.c.hypervisor_type, _hosts.c.cpu_num, _hosts.c.total_physical_memory
)
_MOVE_TOTALS = (
    update(_hosts)
    .where(_hosts.c.uuid == bindparam("host"))
    .values(
        total_cpu_capacity=bindparam("cpu"),
        total_memory_capacity=bindparam("memory"),
        # The right-hand side reads the row as it was: available moves by what total does.
        available_cpu_capacity=_hosts.c.available_cpu_capacity
        + bindparam("cpu")
        - _hosts.c.total_cpu_capacity,
        available_memory_capacity=_hosts.c.available_memory_capacity
        + bindparam("memory")
        - _hosts.c.total_memory_capacity,
    )
)


def apply_capacity_settings(
    session: InTransaction, ratio: int, reserved_of: Mapping[str, ReservedHostCapacity]
) -> None:
    """Every host's totals from its recorded facts and the current settings (``reserved_of``:
    by hypervisor type); available capacity moves by as much as the totals do."""
    for uuid, hypervisor, cpu_num, memory in session.execute(_HOST_FACTS).all():
        reserved = reserved_of.get(hypervisor, ReservedHostCapacity())
        cpu, memory_total = _totals(cpu_num, memory, ratio, reserved)
        session.execute(_MOVE_TOTALS, {"host": uuid, "cpu": cpu, "memory": memory_total})


def approximate_size(size: int) -> str:
    """Bytes for people: ``2 GiB``, ``1.5 GiB``, ``300 MiB``."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(size) >= factor:
            return f"{size / factor:.1f}".removesuffix(".0") + f" {unit}"
    return f"{size} B"


def reservation_shortage(
    host: Mapping[str, Any], reserved: ReservedHostCapacity, cpu: int, memory: int
) -> str | None:
    """Why a host cannot take ``cpu`` and ``memory`` when its reservation is what is short
    (without it, the host would have room), else None.  ``host``: name and available
    capacity, as inventories and allocator candidates carry them."""
    free_cpu, free_memory = host["availableCpuCapacity"], host["availableMemoryCapacity"]
    short = []
    if free_memory < memory:
        if free_memory + reserved.memory < memory:
            return None
        short.append(
            (f"{approximate_size(max(free_memory, 0))} of memory", approximate_size(memory))
        )
    if free_cpu < cpu:
        if free_cpu + reserved.cpu < cpu:
            return None
        short.append((f"{max(free_cpu, 0)} CPU(s)", f"{cpu} CPU(s)"))
    if not short or not reserved.held_by:
        return None
    has = " and ".join(what for what, _ in short)
    needs = " and ".join(need for _, need in short)
    return (
        f"host {host['name']} has {has} free after {' and '.join(reserved.held_by)} "
        f"is held back; the VM needs {needs}"
    )
