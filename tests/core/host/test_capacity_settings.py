"""Settings host capacity derives from (kvm.reservedMemory, the CPU over-provisioning ratio)
apply at once, and a refusal says when a reservation is what is short.

Simulator hosts hold no kvm.reservedMemory, so a test plugin holds it back on them as the
KVM plugin does on KVM hosts (the same config, the same words); tests/system/test_kvm_host
shows it on the real KVM host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from core.config.definitions import GlobalConfigDef
from core.host.extension_points import HostReservedCapacityExtensionPoint, ReservedHostCapacity
from core.kernel.extensions import Plugin
from core.kernel.properties import Properties
from core.kvm.plugin import KvmPlugin
from tests.conftest import make_node, ok
from tests.core.vm.conftest import Lab, make_lab

MiB = 1024**2
GiB = 1024**3


class KvmReservationOnSimulators(Plugin, HostReservedCapacityExtensionPoint):
    """kvm.reservedMemory held back on simulator hosts too."""

    implements = (HostReservedCapacityExtensionPoint,)

    def reserved_host_capacity(self, hypervisor_type: str) -> ReservedHostCapacity:
        if hypervisor_type != "Simulator":
            return ReservedHostCapacity()
        return self.node.plugin(KvmPlugin).reserved_host_capacity("KVM")

    def reserved_capacity_configs(self) -> list[GlobalConfigDef]:
        return self.node.plugin(KvmPlugin).reserved_capacity_configs()


@pytest.fixture
async def lab(props: Properties, tmp_path: Path) -> AsyncIterator[Lab]:
    async with make_node(props, {"kvmOnSimulators": KvmReservationOnSimulators}) as node:
        yield await make_lab(node, tmp_path, cpu=4, memory=8 * GiB)


async def host(lab: Lab) -> dict[str, Any]:
    [row] = await ok(lab.node, "QueryHost")
    return row


async def set_config(lab: Lab, category: str, name: str, value: str) -> None:
    await ok(lab.node, "UpdateGlobalConfig", category=category, name=name, value=value)


async def create_vm(lab: Lab, name: str, offering: str | None = None) -> Any:
    return await lab.node.call(
        "CreateVmInstance",
        {
            "name": name,
            "instanceOfferingUuid": offering or lab.offering["uuid"],
            "imageUuid": lab.image_uuid,
        },
    )


async def test_reserved_memory_applies_to_the_host_at_once(lab: Lab) -> None:
    before = await host(lab)
    assert before["totalMemoryCapacity"] == 8 * GiB - 512 * MiB  # the default reservation
    vm = (await create_vm(lab, "vm1")).inventory  # 512M
    assert (await host(lab))["availableMemoryCapacity"] == 7 * GiB

    await set_config(lab, "kvm", "reservedMemory", "2G")
    now = await host(lab)
    assert now["totalMemoryCapacity"] == 6 * GiB
    assert now["availableMemoryCapacity"] == 6 * GiB - 512 * MiB  # the VM still holds its part

    # A reservation larger than what is free is allowed: the host takes no VM until enough
    # is given back, and the books stay right when it is.
    await set_config(lab, "kvm", "reservedMemory", "8G")
    now = await host(lab)
    assert (now["totalMemoryCapacity"], now["availableMemoryCapacity"]) == (0, -512 * MiB)
    await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
    assert (await host(lab))["availableMemoryCapacity"] == 0
    await set_config(lab, "kvm", "reservedMemory", "1G")
    now = await host(lab)
    assert now["totalMemoryCapacity"] == now["availableMemoryCapacity"] == 7 * GiB

    # What a reconnect computes from the agent's facts is what was applied.
    again = await ok(lab.node, "ReconnectHost", uuid=now["uuid"])
    assert again["totalMemoryCapacity"] == again["availableMemoryCapacity"] == 7 * GiB


async def test_the_cpu_ratio_applies_at_once(lab: Lab) -> None:
    await create_vm(lab, "vm1")  # 1 CPU
    assert (await host(lab))["availableCpuCapacity"] == 4 * 10 - 1
    await set_config(lab, "host", "cpu.overProvisioning.ratio", "2")
    now = await host(lab)
    assert (now["totalCpuCapacity"], now["availableCpuCapacity"]) == (8, 7)


async def test_a_refusal_names_the_reservation_that_is_short(lab: Lab) -> None:
    await set_config(lab, "kvm", "reservedMemory", "2G")  # 6G left to VMs
    offering = await ok(
        lab.node, "CreateInstanceOffering", name="large", cpuNum=1, memorySize=7 * GiB
    )
    reply = await create_vm(lab, "large", offering["uuid"])
    assert not reply.success and reply.error is not None
    cause = reply.error.root_cause()
    assert cause.code == "HOST_ALLOCATION.1000"
    assert (
        "host sim has 6 GiB of memory free after kvm.reservedMemory=2G is held back; "
        "the VM needs 7 GiB"
    ) in cause.description
    assert (await host(lab))["availableMemoryCapacity"] == 6 * GiB  # nothing taken

    # Short whatever the reservation: the refusal does not blame it.
    huge = await ok(lab.node, "CreateInstanceOffering", name="huge", cpuNum=1, memorySize=9 * GiB)
    reply = await create_vm(lab, "huge", huge["uuid"])
    assert reply.error is not None
    assert "reservedMemory" not in str(reply.error)


async def test_a_start_refusal_names_the_reservation_that_is_short(lab: Lab) -> None:
    vm = (await create_vm(lab, "vm1")).inventory
    await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
    await set_config(lab, "kvm", "reservedMemory", "7936M")  # 256M left, the VM needs 512M
    reply = await lab.node.call("StartVmInstance", {"uuid": vm["uuid"]})
    assert reply.error is not None
    assert (
        "host sim has 256 MiB of memory free after kvm.reservedMemory=7936M is held back; "
        "the VM needs 512 MiB"
    ) in str(reply.error)
