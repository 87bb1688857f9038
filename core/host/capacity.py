"""Host capacity: totals from the agent's facts, availability derived from the VMs.

A reservation is one conditional UPDATE (``available >= wanted``), so two
concurrent allocations can never both take the last free memory.
"""

from __future__ import annotations

from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.orm import Session

from core.host.extension_points import ReservedHostCapacity
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
        ).where(VmInstanceVO.host_uuid == host.uuid, VmInstanceVO.state.in_(HOLDING_STATES))
    ).one()
    host.cpu_num = cpu_num
    host.cpu_sockets = cpu_sockets
    host.total_physical_memory = physical_memory
    host.total_cpu_capacity = max(cpu_num * ratio - reserved.cpu, 0)
    host.total_memory_capacity = max(physical_memory - reserved.memory, 0)
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
