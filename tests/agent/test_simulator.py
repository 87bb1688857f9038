"""The simulator backend through the real HTTP protocol: VM life cycle and state reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agent.simulator_backend import SIM_SET_VM_STATE, SimulatorBackend
from contracts import kvm as p
from contracts.kvm import REPORT_VM_STATE
from tests.agent.helpers import AgentCaller, CoreStub, wait_until


@pytest.fixture
def root_volume(tmp_path: Path) -> Path:
    path = tmp_path / "root.qcow2"
    path.write_bytes(b"")
    return path


def start_body(vm_uuid: str, root: Path, **extra: Any) -> dict[str, Any]:
    return {
        "vmUuid": vm_uuid,
        "vmName": "web <1> & co",
        "cpuNum": 1,
        "memorySize": 64 * 1024**2,
        "rootVolume": {"installPath": str(root), "format": "qcow2"},
        "nics": [
            {
                "mac": "52:54:00:12:34:56",
                "bridgeName": "zslbr-a00000001",
                "deviceName": "zslt00000010",
            }
        ],
        "consoleLogPath": str(root.parent / f"{vm_uuid}.log"),
        "timeout": 5,
        **extra,
    }


async def test_vm_life_cycle_reports_every_state(
    connected: AgentCaller, core: CoreStub, root_volume: Path
) -> None:
    vm = "vm-1"
    answer = await connected.ok_async("/vm/start", start_body(vm, root_volume))
    assert answer["vmUuid"] == vm and answer["state"] == "Running"
    await core.wait_for_state(vm, "Running")
    report = next(body for path, body in core.reports if path == REPORT_VM_STATE)
    assert report == {"hostUuid": "host-1", "vmUuid": vm, "vmState": "Running"}
    assert core.report_headers[0]["Authorization"] == f"Bearer {connected.token}"
    assert "started" in (root_volume.parent / f"{vm}.log").read_text()

    # Starting a running VM again is a no-op.
    assert (await connected.ok_async("/vm/start", start_body(vm, root_volume)))[
        "state"
    ] == "Running"

    assert (await connected.ok("/vm/pause", {"vmUuid": vm}))["state"] == "Paused"
    assert (await connected.ok("/vm/pause", {"vmUuid": vm}))["state"] == "Paused"
    assert (await connected.ok("/vm/resume", {"vmUuid": vm}))["state"] == "Running"
    assert (await connected.ok("/vm/console", {"vmUuid": vm}))["consoleLogPath"].endswith(
        f"{vm}.log"
    )
    stopped = await connected.ok_async("/vm/stop", {"vmUuid": vm, "type": "grace", "timeout": 1})
    assert stopped["state"] == "Stopped"
    assert (await connected.ok("/vm/vmsync"))["states"] == {vm: "Stopped"}
    assert (await connected.ok_async("/vm/stop", {"vmUuid": vm, "type": "cold"}))["state"] == (
        "Stopped"
    )
    paused = await connected.call("/vm/pause", {"vmUuid": vm})
    assert paused["success"] is False and "Stopped" in paused["error"]

    assert (await connected.ok_async("/vm/reboot", {"vmUuid": vm}))["state"] == "Running"
    await connected.ok_async("/vm/destroy", {"vmUuid": vm})
    assert (await connected.ok("/vm/vmsync"))["states"] == {}
    await wait_until(lambda: len(core.vm_states(vm)) >= 6, 5, "all reports")
    assert core.vm_states(vm) == [
        "Running",
        "Paused",
        "Running",
        "Stopped",
        "Running",  # the reboot of a stopped VM starts it
        "Stopped",  # destroy
    ]


async def test_a_change_from_outside_is_reported(
    connected: AgentCaller, core: CoreStub, root_volume: Path
) -> None:
    await connected.ok_async("/vm/start", start_body("vm-2", root_volume))
    answer = await connected.ok(SIM_SET_VM_STATE, {"vmUuid": "vm-2", "state": "Crashed"})
    assert answer["state"] == "Crashed"
    await core.wait_for_state("vm-2", "Crashed")
    assert (await connected.ok("/vm/vmsync"))["states"] == {"vm-2": "Crashed"}
    # A crashed VM starts again.
    assert (await connected.ok_async("/vm/start", start_body("vm-2", root_volume)))["state"] == (
        "Running"
    )


async def test_start_checks_its_fields_and_the_root_volume(
    connected: AgentCaller, tmp_path: Path
) -> None:
    missing = tmp_path / "missing.qcow2"
    answer = await connected.call_async("/vm/start", start_body("vm-3", missing))
    assert answer["success"] is False
    assert str(missing) in answer["error"] and "does not exist" in answer["error"]
    bad_mac = start_body("vm-3", missing, nics=[{"mac": "zz", "bridgeName": "br0"}])
    answer = await connected.call_async("/vm/start", bad_mac)
    assert answer["error"] == "field 'nics[0].mac' is not a MAC address: 'zz'"
    answer = await connected.call_async("/vm/start", start_body("../etc", missing))
    assert "vmUuid" in answer["error"]
    answer = await connected.call_async("/vm/start", start_body("vm-3", missing, cpuNum=0))
    assert answer["error"] == "field 'cpuNum' must be an integer >= 1"
    vmdk = {"installPath": str(missing), "format": "vmdk"}
    answer = await connected.call_async("/vm/start", start_body("vm-3", missing, rootVolume=vmdk))
    assert answer["error"] == "field 'rootVolume.format' must be one of qcow2, raw"
    relative = {"installPath": "root.qcow2"}
    answer = await connected.call_async(
        "/vm/start", start_body("vm-3", missing, rootVolume=relative)
    )
    assert "must be an absolute path" in answer["error"]


async def test_reports_before_a_host_connect_are_dropped(
    caller: AgentCaller, core: CoreStub, root_volume: Path
) -> None:
    await caller.ok_async("/vm/start", start_body("vm-4", root_volume))
    assert core.reports == []


async def test_capacity_is_configurable() -> None:
    backend = SimulatorBackend(cpu_num=2, total_memory=4 * 1024**3)
    capacity = await backend.capacity()
    assert (capacity.cpu_num, capacity.total_memory, capacity.free_memory) == (
        2,
        4 * 1024**3,
        4 * 1024**3,
    )
    with pytest.raises(ValueError):
        SimulatorBackend(cpu_num=0)


async def test_vm_expunge_is_refused_while_the_domain_exists(
    connected: AgentCaller, root_volume: Path
) -> None:
    vm = "d" * 32
    body = start_body(vm, root_volume)
    await connected.ok_async(p.VM_START, body)
    expunge = {"vmUuid": vm, "consoleLogPath": body["consoleLogPath"]}
    answer = await connected.call(p.VM_EXPUNGE, expunge)
    assert answer["success"] is False and "destroy it first" in answer["error"]
    assert Path(body["consoleLogPath"]).is_file()
    await connected.ok_async(p.VM_DESTROY, {"vmUuid": vm})
    await connected.ok(p.VM_EXPUNGE, expunge)
    assert not Path(body["consoleLogPath"]).exists()
