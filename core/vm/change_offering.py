"""ZStack's ``ChangeInstanceOffering`` for a VM that is not running.

A Stopped (or only Created) VM holds no capacity on any host: the stop chain gives its
CPU and memory back (core.vm.lifecycle_flows.VmReturnHostFlow) and the start chain
reserves them again from the VM's row (VmAllocateHostForStoppedVmFlow).  So changing the
offering is one update of the row (cpuNum, memorySize, instanceOfferingUuid), and the new
size is checked against its host's free capacity at the next start.  What is checked now
is that some host of the VM's cluster could ever take it: an offering larger than the
biggest host (its total CPU capacity or memory) is refused, naming the numbers.

ZStack also changes a running VM's CPU and memory by hotplug; not here: a running VM is
refused (stop it first).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.host.capacity import approximate_size
from core.host.models import HostVO
from core.kernel.errors import not_found, operr, stateerr
from core.kernel.operation import name_subject
from core.offering.models import InstanceOfferingVO
from core.vm import state as st
from core.vm.models import VmInstanceVO

CHANGEABLE_STATES = frozenset({st.STOPPED, st.CREATED})
"""VM states that hold no host capacity, in which the offering can change."""


def change_instance_offering(session: Session, vm_uuid: str, offering_uuid: str) -> dict[str, Any]:
    """Give the VM the offering's CPU and memory (in one transaction); its inventory."""
    vm = session.get(VmInstanceVO, vm_uuid)
    if vm is None:
        raise not_found(VmInstanceVO.resource_type, vm_uuid)
    name_subject(vm.uuid, vm.name)
    offering = session.get(InstanceOfferingVO, offering_uuid)
    if offering is None:
        raise not_found(InstanceOfferingVO.resource_type, offering_uuid)
    what = f"cannot change the instance offering of VM {vm.name}"
    if offering.state != "Enabled":
        raise stateerr(f"{what}: offering {offering.name} is {offering.state}")
    if vm.state not in CHANGEABLE_STATES:
        raise stateerr(
            f"{what}: it is {vm.state}; stop it first (StopVmInstance)",
            "CPU and memory change while a VM is Stopped (no hotplug here)",
        )
    _check_fits_a_host(session, vm, offering, what)
    vm.instance_offering_uuid = offering.uuid
    vm.cpu_num = offering.cpu_num
    vm.memory_size = offering.memory_size
    session.flush()
    return vm.to_inventory()


def _check_fits_a_host(
    session: Session, vm: VmInstanceVO, offering: InstanceOfferingVO, what: str
) -> None:
    """Refuse an offering that no host of the VM's cluster (or, for a VM never placed,
    of its zone, or anywhere) could ever take, however idle."""
    where: list[Any] = []
    scope = "any host"
    cluster_uuid = vm.cluster_uuid or _cluster_of_host(session, vm.last_host_uuid)
    if cluster_uuid is not None:
        where, scope = [HostVO.cluster_uuid == cluster_uuid], "any host of its cluster"
    elif vm.zone_uuid is not None:
        where, scope = [HostVO.zone_uuid == vm.zone_uuid], "any host of its zone"
    cpu, memory = session.execute(
        select(func.max(HostVO.total_cpu_capacity), func.max(HostVO.total_memory_capacity)).where(
            *where
        )
    ).one()
    if cpu is None:
        return  # no host to compare with: the next start's allocation will say so
    too_big = []
    if offering.cpu_num > cpu:
        too_big.append(f"{offering.cpu_num} CPU(s) where the biggest has {cpu}")
    if offering.memory_size > memory:
        too_big.append(
            f"{approximate_size(offering.memory_size)} of memory where the biggest has "
            f"{approximate_size(memory)}"
        )
    if too_big:
        raise operr(
            f"{what}: offering {offering.name} is larger than {scope} can ever take: "
            + "; ".join(too_big),
            "host capacity is counted after host.cpu.overProvisioning.ratio and the "
            "memory reserved on each host",
        )


def _cluster_of_host(session: Session, host_uuid: str | None) -> str | None:
    if host_uuid is None:
        return None
    host = session.get(HostVO, host_uuid)
    return None if host is None else host.cluster_uuid
