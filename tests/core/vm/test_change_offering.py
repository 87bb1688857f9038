"""ChangeInstanceOffering on a simulator lab: a stopped VM takes the new CPU and memory,
which its host's capacity is checked against at the next start."""

from __future__ import annotations

from typing import Any

from core.host.capacity import approximate_size
from tests.conftest import fails, ok
from tests.core.vm.conftest import GiB, Lab, MiB


async def host(lab: Lab) -> dict[str, Any]:
    [found] = await ok(lab.node, "QueryHost")
    return found  # type: ignore[no-any-return]


async def a_vm(lab: Lab, name: str) -> dict[str, Any]:
    return await ok(  # type: ignore[no-any-return]
        lab.node,
        "CreateVmInstance",
        name=name,
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )


async def test_a_stopped_vm_takes_the_new_size_at_its_next_start(lab: Lab) -> None:
    node = lab.node
    vm = await a_vm(lab, "vm")
    await ok(node, "StopVmInstance", uuid=vm["uuid"])
    idle = await host(lab)  # a stopped VM holds nothing on its host
    big = await ok(node, "CreateInstanceOffering", name="big", cpuNum=2, memorySize=GiB)
    changed = await ok(
        node,
        "ChangeInstanceOffering",
        vmInstanceUuid=vm["uuid"],
        instanceOfferingUuid=big["uuid"],
    )
    assert (changed["cpuNum"], changed["memorySize"]) == (2, GiB)
    assert changed["instanceOfferingUuid"] == big["uuid"] and changed["state"] == "Stopped"
    assert await host(lab) == idle
    assert (await ok(node, "StartVmInstance", uuid=vm["uuid"]))["state"] == "Running"
    running = await host(lab)
    assert running["availableCpuCapacity"] == idle["availableCpuCapacity"] - 2
    assert running["availableMemoryCapacity"] == idle["availableMemoryCapacity"] - GiB


async def test_refusals_change_nothing(lab: Lab) -> None:
    node = lab.node
    vm = await a_vm(lab, "vm")
    big = await ok(node, "CreateInstanceOffering", name="big", cpuNum=2, memorySize=GiB)
    running = await fails(
        node,
        "ChangeInstanceOffering",
        "SYS.1009",
        vmInstanceUuid=vm["uuid"],
        instanceOfferingUuid=big["uuid"],
    )
    assert "VM vm: it is Running; stop it first" in running, running
    await ok(node, "StopVmInstance", uuid=vm["uuid"])
    totals = await host(lab)
    cpu, memory = totals["totalCpuCapacity"], totals["totalMemoryCapacity"]
    huge = await ok(
        node, "CreateInstanceOffering", name="huge", cpuNum=cpu + 1, memorySize=memory + GiB
    )
    too_big = await fails(
        node,
        "ChangeInstanceOffering",
        "SYS.1006",
        vmInstanceUuid=vm["uuid"],
        instanceOfferingUuid=huge["uuid"],
    )
    assert f"{cpu + 1} CPU(s) where the biggest has {cpu}" in too_big, too_big
    assert (
        f"{approximate_size(memory + GiB)} of memory where the biggest has "
        f"{approximate_size(memory)}" in too_big
    ), too_big
    [row] = await ok(node, "QueryVmInstance", conditions=[f"uuid={vm['uuid']}"])
    assert (row["cpuNum"], row["memorySize"]) == (1, 512 * MiB)
    assert row["instanceOfferingUuid"] == lab.offering["uuid"]


async def test_an_offering_that_fits_the_host_but_not_its_free_room(lab: Lab) -> None:
    """Accepted while stopped; the next start says the host has not that much free."""
    node = lab.node
    await a_vm(lab, "neighbour")  # holds 512 MiB
    vm = await a_vm(lab, "vm")
    await ok(node, "StopVmInstance", uuid=vm["uuid"])
    whole = (await host(lab))["totalMemoryCapacity"]
    fat = await ok(node, "CreateInstanceOffering", name="fat", cpuNum=1, memorySize=whole)
    await ok(
        node, "ChangeInstanceOffering", vmInstanceUuid=vm["uuid"], instanceOfferingUuid=fat["uuid"]
    )
    reply = await node.call("StartVmInstance", {"uuid": vm["uuid"]})
    assert not reply.success and "of memory free" in str(reply.error), reply.error
    [row] = await ok(node, "QueryVmInstance", conditions=[f"uuid={vm['uuid']}"])
    assert row["state"] == "Stopped" and row["memorySize"] == whole
