"""``zstack-lite reset`` on simulator labs, driven as a user would: the API phase removes
every resource (one line each), the node and its agents stop, the data dir goes, a second
reset finds nothing; a lab whose data dir was deleted by hand (its node still running, or
killed) is swept by its identity.  The real host (bridges, routers, domains, nft) is
tests/system/test_reset.py's."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from agent.network.processes import SHORT_SOCKET_DIR
from agentkit.procs import alive
from contracts.names import DNSMASQ_RUN_DIR, lab_id
from tests.core.daemon.test_service import first_vm
from tests.service_lab import ServiceLab, processes_naming


def run_files_naming(*names: str) -> list[Path]:
    """Files under /run/zstack-lite (router sockets, dnsmasq run dirs) named after ``names``."""
    found = []
    for root in (SHORT_SOCKET_DIR, DNSMASQ_RUN_DIR):
        if root.is_dir():
            found += [p for p in root.iterdir() if any(n in p.name for n in names)]
    return found


def test_reset_deletes_everything_through_the_api_then_the_data_dir(
    sim_node_service: ServiceLab, tmp_path: Path
) -> None:
    lab = sim_node_service
    vm = first_vm(lab, tmp_path, "web1")
    [router] = lab.ok("QueryVirtualRouterVm")
    node_pid = lab.node_pid
    assert processes_naming(lab.data_dir)  # the simulator agent and the router's agent
    res = lab.reset()
    assert res.rc == 0, res.out + res.err
    lines = res.out.splitlines()
    assert lines[0] == f"resetting the lab on {lab.data_dir} (lab {lab_id(lab.data_dir)})"
    for line in (
        "destroying VM web1 ... done",
        f"destroying virtual router {router['name']} ... done",
        "deleting virtual router offering default ... done",
        "deleting L3 network private ... done",
        "deleting L3 network public ... done",
        "deleting L2 network private ... done",
        "deleting L2 network public ... done",
        "deleting image img ... done",
        f"stopped the management node (pid {node_pid})",
        f"removed the data dir {lab.data_dir}",
    ):
        assert line in lines, res.out
    assert lines.index("deleting L3 network private ... done") < lines.index(
        "deleting L3 network public ... done"
    )
    assert any(line.startswith("deleting host ") and line.endswith(" ... done") for line in lines)
    assert lines[-1].startswith("reset done: 9 resource(s) deleted through the API")
    assert not lab.data_dir.exists()
    assert lab.node_pid is None
    assert processes_naming(lab.data_dir) == []
    assert run_files_naming(router["uuid"], vm["uuid"]) == []
    # idempotent: a second reset finds nothing, and says so
    again = lab.reset()
    assert again.rc == 0, again.out + again.err
    assert again.out.splitlines()[-1] == (
        f"nothing of the lab on {lab.data_dir} was left on this host"
    )
    assert not lab.data_dir.exists() and lab.node_pid is None


def test_reset_without_yes_and_without_a_terminal_changes_nothing(
    sim_node_service: ServiceLab,
) -> None:
    lab = sim_node_service
    assert lab.service("start").rc == 0
    res = lab.service("reset")
    assert res.rc == 2
    assert "reset needs --yes when not run from a terminal" in res.err
    assert lab.node_pid is not None and (lab.data_dir / "zstack.db").exists()


@pytest.mark.parametrize("node", ["running", "killed"])
def test_reset_after_the_data_dir_was_deleted_by_hand(
    sim_node_service: ServiceLab, tmp_path: Path, node: str
) -> None:
    """A running node is found by the deleted lock file it holds (and stops its agents);
    after a kill -9 of the node, its agents are found by the data dir they name: never
    by name alone."""
    lab = sim_node_service
    first_vm(lab, tmp_path)
    [router] = lab.ok("QueryVirtualRouterVm")
    node_pid = lab.node_pid
    agents = processes_naming(lab.data_dir)
    assert node_pid and agents
    if node == "killed":
        lab.kill_node()
    shutil.rmtree(lab.data_dir)
    res = lab.reset()
    assert res.rc == 0, res.out + res.err
    assert f"{lab.data_dir} does not exist: sweeping what the lab left on this host" in res.out
    ended = [node_pid] if node == "running" else agents
    for pid in ended:
        assert f"removed process {pid} (" in res.out, res.out
    assert processes_naming(lab.data_dir) == []
    assert not any(alive(pid) for pid in [node_pid, *agents])  # a zombie is not alive
    assert run_files_naming(router["uuid"]) == []
    again = lab.reset()
    assert again.rc == 0 and "was left on this host" in again.out.splitlines()[-1], again.out


def test_reset_leaves_another_lab_alone(tmp_path: Path) -> None:
    """Two simulator labs whose data dirs share a prefix (data, data2): resetting one
    leaves the other's node, agents and data dir as they were."""
    from tests.service_lab import service_lab

    first = service_lab(tmp_path / "a", '[bootstrap]\nlocal_host = "simulator"\n')
    other = service_lab(tmp_path / "a", '[bootstrap]\nlocal_host = "simulator"\n')
    other.config = other.config.with_name("other.toml")
    other.config.write_text(
        f'[core]\ndata_dir = "{tmp_path / "a" / "data2"}"\n[bootstrap]\nlocal_host = "simulator"\n'
    )
    other.env["ZSTACK_LITE_CONFIG"] = str(other.config)
    other.data_dir = tmp_path / "a" / "data2"
    try:
        first_vm(first, tmp_path, "vm-a")
        first_vm(other, tmp_path, "vm-b")
        others = processes_naming(other.data_dir)
        other_node = other.node_pid
        res = first.reset()
        assert res.rc == 0, res.out + res.err
        assert not first.data_dir.exists()
        assert other.node_pid == other_node and other.data_dir.exists()
        assert processes_naming(other.data_dir) == others
        [vm] = other.ok("QueryVmInstance")
        assert vm["state"] == "Running"
    finally:  # the other first: processes_naming(.../data) would match .../data2 too
        other.stop()
        first.stop()
