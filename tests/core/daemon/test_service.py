"""The node service on simulator labs, driven as a user would: ``zstack-lite`` and ``zcli``
subprocesses on a fresh data dir, no ztui anywhere."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.host.port_holder import cmdline_of, port_holder
from tests.service_lab import ServiceLab, processes_naming, service_lab

ASKED = {"AddImage", "CreateVmInstance", "DestroyVmInstance", "UpdateGlobalConfig"}
NODE_OWN = {"hostConnect", "reconnectVirtualRouter", "virtualRouterPostCreate"}
"""Background chains the node runs by itself (reconnects), named after their chain."""


def wait_until(check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return found


def qcow2(path: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    return path


def first_vm(lab: ServiceLab, tmp: Path, name: str = "vm1") -> dict[str, Any]:
    """QueryHost, AddImage, CreateVmInstance: what a new user does first."""
    [host] = lab.ok("QueryHost")
    assert host["status"] == "Connected"
    image = lab.ok("AddImage", "name=img", f"url={qcow2(tmp / f'{name}.qcow2')}")
    [offering] = lab.ok("QueryInstanceOffering", "name=small")
    [l3] = lab.ok("QueryL3Network", "name=private")
    return lab.ok(
        "CreateVmInstance",
        f"name={name}",
        f"instanceOfferingUuid={offering['uuid']}",
        f"imageUuid={image['uuid']}",
        f"l3NetworkUuids={l3['uuid']}",
    )


@pytest.mark.parametrize("run", range(10))
def test_first_calls_on_a_fresh_lab_succeed_first_try(tmp_path: Path, run: int) -> None:
    lab = service_lab(tmp_path, '[bootstrap]\nlocal_host = "simulator"\n')
    try:
        vm = first_vm(lab, tmp_path)
        assert vm["state"] == "Running"
        assert lab.service("stop").rc == 0
        agents = [p for p in processes_naming(lab.data_dir) if "agent.main" in cmdline_of(p)]
        assert agents == []  # stop took the agents the node owns
    finally:
        lab.stop()


def test_start_status_stop(sim_node_service: ServiceLab) -> None:
    lab = sim_node_service
    started = lab.service("start")
    assert started.rc == 0, started.err
    pid = lab.node_pid
    assert f"management node started: pid {pid}, socket {lab.data_dir / 'node.sock'}" in (
        started.out
    )
    again = lab.service("start")
    assert f"already running: pid {pid}" in again.out
    status = lab.service("status")
    assert status.rc == 0, status.err
    assert f"running, pid {pid}, up " in status.out
    assert f"data dir         {lab.data_dir}" in status.out
    assert "version          0.1.0" in status.out
    assert "Simulator" in status.out and "Connected" in status.out
    as_json = lab.service("status", "--json").json()
    assert as_json["pid"] == pid and as_json["problems"] == []
    [host] = as_json["hosts"]
    agent = port_holder(int(host["address"].rsplit(":", 1)[1]))
    assert agent is not None and agent.pid is not None
    stopped = lab.service("stop")
    assert stopped.rc == 0 and f"(pid {pid}) stopped" in stopped.out
    assert lab.node_pid is None
    assert lab.service("status").rc == 3
    assert processes_naming(lab.data_dir) == []  # the simulator agent went with the node


def test_the_node_keeps_the_lab_healthy_with_no_client(
    sim_node_service: ServiceLab, tmp_path: Path
) -> None:
    lab = sim_node_service
    vm = first_vm(lab, tmp_path)
    lab.ok("UpdateGlobalConfig", "category=vm", "name=expungePeriod", "value=1")
    lab.ok("UpdateGlobalConfig", "category=vm", "name=expungeInterval", "value=1")
    lab.ok("UpdateGlobalConfig", "category=virtualRouter", "name=ping.interval", "value=1")
    lab.ok("DestroyVmInstance", f"uuid={vm['uuid']}")
    # nobody calls anything: the expunger runs on schedule
    wait_until(lambda: not lab.ok("QueryVmInstance", f"uuid={vm['uuid']}"), "the expunge", 60)
    # a killed router agent is reconnected and replayed by the ping tracker
    [router] = lab.ok("QueryVirtualRouterVm")
    os.kill(router["agentPid"], signal.SIGKILL)

    def replayed() -> bool:
        [now] = lab.ok("QueryVirtualRouterVm")
        return now["agentPid"] not in (None, router["agentPid"]) and now["status"] == "Connected"

    wait_until(replayed, "the router's reconnect", 60)


def test_after_kill_9_any_call_brings_the_lab_back(
    sim_node_service: ServiceLab, tmp_path: Path
) -> None:
    lab = sim_node_service
    vm = first_vm(lab, tmp_path)
    [host] = lab.ok("QueryHost")
    agent = port_holder(host["agentPort"])
    assert agent is not None
    [router] = lab.ok("QueryVirtualRouterVm")
    killed = lab.kill_node()
    res = lab.zcli("QueryVmInstance")
    assert res.rc == 0, res.err
    assert "started the management node" in res.err
    assert lab.node_pid not in (None, killed)
    [again] = res.json()["inventories"]
    assert (again["uuid"], again["state"]) == (vm["uuid"], "Running")
    [host_now] = lab.ok("QueryHost")
    assert host_now["status"] == "Connected"
    now = port_holder(host["agentPort"])
    assert now is not None and now.pid == agent.pid  # the same agent, adopted
    [router_now] = lab.ok("QueryVirtualRouterVm")
    assert router_now["status"] == "Connected" and router_now["agentPid"] == router["agentPid"]


def test_the_operations_log_holds_only_what_was_asked(
    sim_node_service: ServiceLab, tmp_path: Path
) -> None:
    lab = sim_node_service
    first_vm(lab, tmp_path)
    for _ in range(8):
        lab.ok("QueryHost")  # queries are no operations
    lab.kill_node()
    lab.ok("QueryHost")
    lab.service("stop")
    lab.ok("QueryHost")
    ops = lab.ok("QueryOperationLog")
    unasked = [
        (op["name"], op.get("apiName"))
        for op in ops
        if op.get("apiName") not in ASKED and op["name"] not in NODE_OWN
    ]
    bootstrap = {"CreateZone", "CreateCluster", "AddSimulatorHost", "AddLocalBackupStorage"}
    assert {name for name, _ in unasked} <= bootstrap | {
        "AddLocalPrimaryStorage",
        "AttachPrimaryStorageToCluster",
        "CreateL2NoVlanNetwork",
        "AttachL2NetworkToCluster",
        "CreateL3Network",
        "AddIpRangeByNetworkCidr",
        "AddIpRange",
        "CreateVirtualRouterOffering",
        "AttachNetworkServiceToL3Network",
        "CreateInstanceOffering",
        "AddDnsToL3Network",
        "CreateSystemTag",
    }, unasked  # the first start's bootstrap, made through the API
    failed = [op for op in ops if op["status"] not in ("Succeeded",)]
    assert failed == [], failed  # no cancelled reconnects, nothing red
