"""The VM life cycle on a simulator host: real agent protocol, real qcow2 files."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.kernel.errors import SysErrors
from tests.conftest import fails, ok
from tests.core.vm.conftest import Lab, MiB


async def host_free(lab: Lab) -> tuple[int, int]:
    [host] = await ok(lab.node, "QueryHost", conditions=[f"uuid={lab.host['uuid']}"])
    return host["availableCpuCapacity"], host["availableMemoryCapacity"]


async def create(lab: Lab, name: str = "vm1", **extra: Any) -> dict[str, Any]:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name=name,
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
        **extra,
    )


def files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


async def test_full_life_cycle_leaves_nothing(lab: Lab) -> None:
    free = await host_free(lab)
    events: list[Any] = []
    lab.node.events.subscribe("/vm/state/change", lambda e: events.append(e.data["newState"]))
    vm = await create(lab)
    assert vm["state"] == "Running" and vm["hostUuid"] == lab.host["uuid"]
    assert await host_free(lab) == (free[0] - 1, free[1] - 512 * MiB)
    [volume_file] = [f for f in files(lab.primary_url) if f.startswith("rootvolumes/")]
    assert volume_file.endswith(".qcow2")

    for api, state in (
        ("PauseVmInstance", "Paused"),
        ("ResumeVmInstance", "Running"),
        ("RebootVmInstance", "Running"),
        ("StopVmInstance", "Stopped"),
    ):
        assert (await ok(lab.node, api, uuid=vm["uuid"]))["state"] == state
    assert await host_free(lab) == free  # a stopped VM holds no capacity
    assert (await ok(lab.node, "StartVmInstance", uuid=vm["uuid"]))["state"] == "Running"
    assert await host_free(lab) == (free[0] - 1, free[1] - 512 * MiB)

    destroyed = await ok(lab.node, "DestroyVmInstance", uuid=vm["uuid"])
    assert destroyed["state"] == "Destroyed"  # vm.deletionPolicy is Delay by default
    assert await host_free(lab) == free
    assert (await ok(lab.node, "RecoverVmInstance", uuid=vm["uuid"]))["state"] == "Stopped"
    await ok(lab.node, "DestroyVmInstance", uuid=vm["uuid"])
    await ok(lab.node, "ExpungeVmInstance", uuid=vm["uuid"])
    assert await ok(lab.node, "QueryVmInstance") == []
    assert await ok(lab.node, "QueryPrimaryStorage")  # still there
    assert not [f for f in files(lab.primary_url) if f.startswith("rootvolumes/")]
    assert await host_free(lab) == free
    assert events[:3] == ["Starting", "Running", "Pausing"]


async def test_expunge_leaves_no_console_log_and_no_volume_directory(lab: Lab) -> None:
    vms = [await create(lab, f"vm{i}") for i in range(3)]
    logs = [lab.primary_url / "consoles" / f"{vm['uuid']}.log" for vm in vms]
    directories = [lab.primary_url / "rootvolumes" / f"vm-{vm['uuid']}" for vm in vms]
    assert all(log.is_file() for log in logs) and all(d.is_dir() for d in directories)
    (lab.primary_url / "consoles" / f"{vms[0]['uuid']}.log.0").write_text("rotated\n")

    await ok(lab.node, "StopVmInstance", uuid=vms[0]["uuid"])
    for vm in vms:
        await ok(lab.node, "DestroyVmInstance", uuid=vm["uuid"])
        await ok(lab.node, "ExpungeVmInstance", uuid=vm["uuid"])
    assert not any(log.exists() for log in logs)
    assert not any(d.exists() for d in directories)
    assert sorted(p.name for p in (lab.primary_url / "consoles").iterdir()) == []
    assert sorted(p.name for p in (lab.primary_url / "rootvolumes").iterdir()) == []
    assert (lab.primary_url / "imagecache").is_dir()  # what other VMs share stays


async def test_state_machine_refuses_what_a_state_does_not_allow(lab: Lab) -> None:
    vm = await create(lab)
    text = await fails(lab.node, "ResumeVmInstance", SysErrors.INVALID_STATE, uuid=vm["uuid"])
    assert text == "cannot resume VM vm1: it is Running"
    await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
    await fails(lab.node, "PauseVmInstance", SysErrors.INVALID_STATE, uuid=vm["uuid"])
    await fails(lab.node, "ExpungeVmInstance", SysErrors.INVALID_STATE, uuid=vm["uuid"])
    await fails(lab.node, "RecoverVmInstance", SysErrors.INVALID_STATE, uuid=vm["uuid"])
    [row] = await ok(lab.node, "QueryVmInstance")
    assert row["state"] == "Stopped"


async def test_strategies(lab: Lab) -> None:
    created = await create(lab, "just", strategy="JustCreate")
    assert created["state"] == "Created" and created["hostUuid"] is None
    stopped = await create(lab, "stopped", strategy="CreateStopped")
    assert stopped["state"] == "Stopped" and stopped["lastHostUuid"] == lab.host["uuid"]
    assert (await ok(lab.node, "StartVmInstance", uuid=stopped["uuid"]))["state"] == "Running"


async def test_direct_deletion_policy_expunges_at_once(lab: Lab) -> None:
    await ok(lab.node, "UpdateGlobalConfig", category="vm", name="deletionPolicy", value="Direct")
    vm = await create(lab)
    await ok(lab.node, "DestroyVmInstance", uuid=vm["uuid"])
    assert await ok(lab.node, "QueryVmInstance") == []
    assert not [f for f in files(lab.primary_url) if f.startswith("rootvolumes/")]


async def test_not_enough_capacity_is_a_clear_error_and_leaves_nothing(lab: Lab) -> None:
    big = await ok(lab.node, "CreateInstanceOffering", name="big", cpuNum=64, memorySize=512 * MiB)
    reply = await lab.node.call(
        "CreateVmInstance",
        {"name": "huge", "instanceOfferingUuid": big["uuid"], "imageUuid": lab.image_uuid},
    )
    assert not reply.success and reply.error is not None
    assert reply.error.root_cause().code == "HOST_ALLOCATION.1000"
    assert "64 CPU(s)" in reply.error.root_cause().description
    assert await ok(lab.node, "QueryVmInstance") == []


async def test_a_vm_stopped_outside_the_project_becomes_stopped(lab: Lab) -> None:
    from agent.simulator_backend import SIM_SET_VM_STATE
    from core.host.plugin import HostPlugin

    free = await host_free(lab)
    vm = await create(lab)
    agent = lab.node.plugin(HostPlugin)._agents[lab.host["uuid"]]
    await agent.call(SIM_SET_VM_STATE, {"vmUuid": vm["uuid"], "state": "Stopped"})

    async def stopped() -> bool:
        [row] = await ok(lab.node, "QueryVmInstance")
        return row["state"] == "Stopped"

    for _ in range(100):  # the agent reports it; no polling by the core
        if await stopped():
            break
        await asyncio.sleep(0.05)
    assert await stopped()
    assert await host_free(lab) == free
    [row] = await ok(lab.node, "QueryVmInstance")
    assert row["hostUuid"] is None and row["lastHostUuid"] == lab.host["uuid"]


async def test_host_reconnect_syncs_vm_states(lab: Lab) -> None:
    from agent.simulator_backend import SIM_SET_VM_STATE
    from core.host.plugin import HostPlugin

    vm = await create(lab)
    hosts = lab.node.plugin(HostPlugin)
    # Drop the report (as if the node had been down), then reconnect: the sync catches up.
    lab.node.rest._reports.pop("/kvm/reportvmstate")
    agent = hosts._agents[lab.host["uuid"]]
    await agent.call(SIM_SET_VM_STATE, {"vmUuid": vm["uuid"], "state": "Stopped"})
    [row] = await ok(lab.node, "QueryVmInstance")
    assert row["state"] == "Running"
    await ok(lab.node, "ReconnectHost", uuid=lab.host["uuid"])
    [row] = await ok(lab.node, "QueryVmInstance")
    assert row["state"] == "Stopped"


async def test_a_deleted_image_cannot_make_a_vm(lab: Lab) -> None:
    free = await host_free(lab)
    await ok(lab.node, "DeleteImage", uuid=lab.image_uuid)
    text = await fails(
        lab.node,
        "CreateVmInstance",
        SysErrors.INVALID_STATE,
        name="vm1",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )
    assert text == "image base cannot be used: it is Deleted"
    assert await ok(lab.node, "QueryVmInstance") == []
    assert await host_free(lab) == free
