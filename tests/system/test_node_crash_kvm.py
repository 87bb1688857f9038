"""A node killed (SIGKILL) at any step of the VM and virtual-router chains, or while
unwinding them, on the real host with libvirt: after it starts again the database and the
host are as after a clean failure (or, for the chains that run on after a crash, as after
the operation): no domain, overlay, console log, IP, NIC, capacity, tag, journal row,
link, namespace, process, host NAT rule or run file left, and no VM or router in an
intermediate state.

The kill points are every position of the declared chains (their DEFAULT_FLOWS), so a
new flow is covered without editing this test.  A case takes 10-60 s on these machines
(two node starts on a kvm lab), so ``make test`` runs the positions that touch the host
(the kill right after a flow that made something on it: volume, resources, domain,
router namespace, agent, dnsmasq and nftables entries) and
``ZSL_CRASH_MATRIX=full`` runs every position.  One kvm lab serves every case: each case
restarts the node with its fault (tests/faults.py, through config.toml [chains]), makes
the call that dies, and restarts the node plain, which takes the interrupted run up.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.guest_image import build as guest_image
from core.allocator.flows import DEFAULT_FLOWS as ALLOCATOR_FLOWS
from core.virtual_router.flows import CHAINS as ROUTER_CHAINS
from core.virtual_router.flows import CREATE_CHAIN as ROUTER_CREATE
from core.virtual_router.flows import POST_CREATE_CHAIN as ROUTER_POST_CREATE
from core.vm.create_flows import DEFAULT_FLOWS as CREATE_FLOWS
from core.vm.lifecycle_flows import CHAINS
from tests.crash_lab import CrashLab
from tests.faults import KILL_AGENT_THEN_FAIL, killed_at, killed_unwinding_at

pytestmark = pytest.mark.system
IMAGE = Path(__file__).resolve().parents[2] / "build" / "tiny-guest.qcow2"
FULL = os.environ.get("ZSL_CRASH_MATRIX") == "full"
HOST_FLOWS = (
    "VmAllocateVolumeFlow",
    "VmCreateOnHypervisorFlow",
    "VmStartOnHypervisorFlow",
    "VmStopOnHypervisorFlow",
    "VmDestroyOnHypervisorFlow",
    "VmExpungeRootVolumeFlow",
    "ApplianceVmCreateOnHostFlow",
    "VirtualRouterDeployAgentFlow",
    "VirtualRouterSyncDnsOnStartFlow",
    "VirtualRouterSyncDHCPOnStartFlow",
    "VirtualRouterSyncSNATOnStartFlow",
)
"""Flows that make or remove something on the host: the default matrix kills after them."""


def positions(flows: list[str], first: int = 0, end: int | None = None) -> list[int]:
    """Kill positions: every one in the full matrix, else right after a host flow."""
    every = list(range(first, len(flows) + 1 if end is None else end))
    if FULL:
        return every
    return [p for p in every if p > 0 and flows[p - 1].rsplit(".", 1)[-1] in HOST_FLOWS]


class Lab:
    """The lab and what every case needs from it."""

    def __init__(self, crash: CrashLab) -> None:
        self.crash = crash
        crash.configure()
        crash.start()
        image = crash.ok("AddImage", "name=tiny", f"url={IMAGE}")
        [offering] = crash.ok("QueryInstanceOffering", "name=small")
        [l3] = crash.ok("QueryL3Network", "name=private")
        self.create_args = [
            f"instanceOfferingUuid={offering['uuid']}",
            f"imageUuid={image['uuid']}",
            f"l3NetworkUuids={l3['uuid']}",
        ]
        # The network's router and the image cache are made by the first VM and kept.
        self.keeper = self.create("keeper")

    def create(self, name: str) -> dict[str, Any]:
        return self.crash.ok("CreateVmInstance", f"name={name}", *self.create_args)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    guest_image.main(["--output", str(IMAGE)])  # builds only if missing or stale
    root = Path(tempfile.mkdtemp(prefix="zsl-test-crash-", dir="/var/tmp"))
    root.chmod(0o755)  # QEMU runs as libvirt-qemu and must reach the storage
    crash = CrashLab(root, '[bootstrap]\nlocal_host = "kvm"\n', kvm=True)
    try:
        yield Lab(crash)
    finally:
        try:
            crash.lab.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


def _after_recovery(lab: Lab) -> dict[str, Any]:
    lab.crash.recover()
    lab.crash.assert_settled()
    return lab.crash.state()


CREATE_CASES = [
    *(("createVm", killed_at(CREATE_FLOWS, p)) for p in positions(CREATE_FLOWS)),
    *(
        ("createVm", killed_unwinding_at(CREATE_FLOWS, p))
        for p in positions(CREATE_FLOWS, 1, len(CREATE_FLOWS))
    ),
    *(
        ("hostAllocator", killed_at(ALLOCATOR_FLOWS, p))
        for p in (range(len(ALLOCATOR_FLOWS) + 1) if FULL else [0])
    ),
]


def _case_id(case: tuple[str, list[str]]) -> str:
    chain, flows = case
    kind = "unwinding" if flows[-1].endswith("FailHere") else "running"
    at = next(i for i, f in enumerate(flows) if f.startswith("tests.faults.Kill"))
    return f"{chain}-{kind}-{at}"


@pytest.mark.parametrize("case", CREATE_CASES, ids=_case_id)
def test_a_create_killed_anywhere_leaves_nothing(lab: Lab, case: tuple[str, list[str]]) -> None:
    chain, flows = case
    before = lab.crash.state()
    lab.crash.crash({chain: flows}, "CreateVmInstance", "name=doomed", *lab.create_args)
    assert _after_recovery(lab) == before


def _victim(lab: Lab, name: str) -> dict[str, Any]:
    return lab.create(name)


@pytest.mark.parametrize(
    "flows",
    [
        *(killed_at(CHAINS["startVm"], p) for p in positions(CHAINS["startVm"])),
        *(
            killed_unwinding_at(CHAINS["startVm"], p)
            for p in positions(CHAINS["startVm"], 1, len(CHAINS["startVm"]))
        ),
    ],
    ids=lambda flows: _case_id(("startVm", flows)),
)
def test_a_start_killed_anywhere_leaves_the_vm_stopped(lab: Lab, flows: list[str]) -> None:
    empty = lab.crash.state()
    vm = _victim(lab, "start-victim")
    # cold: a guest stopped before it has booted ignores ACPI (a grace stop waits 60 s)
    lab.crash.ok("StopVmInstance", f"uuid={vm['uuid']}", "type=cold")
    before = lab.crash.state()
    lab.crash.crash({"startVm": flows}, "StartVmInstance", f"uuid={vm['uuid']}")
    assert _after_recovery(lab) == before  # rolled back: Stopped, no domain, capacity back
    _expunge(lab, vm)
    assert lab.crash.state() == empty


@pytest.mark.parametrize(
    "chain,position",
    [(chain, p) for chain in ("stopVm", "destroyVm") for p in positions(CHAINS[chain])],
)
def test_a_stop_or_destroy_killed_anywhere_runs_on(lab: Lab, chain: str, position: int) -> None:
    flows = CHAINS[chain]
    empty = lab.crash.state()
    vm = _victim(lab, f"{chain}-victim")
    call = ["StopVmInstance", "type=cold"] if chain == "stopVm" else ["DestroyVmInstance"]
    lab.crash.crash({chain: killed_at(flows, position)}, *call, f"uuid={vm['uuid']}")
    after = _after_recovery(lab)
    # Resumed to its end: as after the call itself.
    state = dict((uuid, st) for uuid, st, _ in after["vms"])[vm["uuid"]]
    assert state == ("Stopped" if chain == "stopVm" else "Destroyed")
    assert not any(vm["uuid"] in name and "running" in st for name, st in after["domains"])
    _expunge(lab, vm)
    assert lab.crash.state() == empty  # capacity given back once, nothing left


@pytest.mark.parametrize("position", positions(CHAINS["expungeVm"]))
def test_an_expunge_killed_anywhere_runs_on(lab: Lab, position: int) -> None:
    before = lab.crash.state()
    vm = _victim(lab, "expunge-victim")
    lab.crash.ok("DestroyVmInstance", f"uuid={vm['uuid']}")
    lab.crash.crash(
        {"expungeVm": killed_at(CHAINS["expungeVm"], position)},
        "ExpungeVmInstance",
        f"uuid={vm['uuid']}",
    )
    assert _after_recovery(lab) == before  # the VM is gone with all it held


def _expunge(lab: Lab, vm: dict[str, Any]) -> None:
    """Take a case's VM away again, so that the next case starts from the same state."""
    [now] = lab.crash.ok("QueryVmInstance", f"uuid={vm['uuid']}")
    if now["state"] != "Destroyed":
        lab.crash.ok("DestroyVmInstance", f"uuid={vm['uuid']}")
    lab.crash.ok("ExpungeVmInstance", f"uuid={vm['uuid']}")


def test_a_rollback_the_dead_agent_cannot_do_waits_for_gc_and_then_cleans_up(lab: Lab) -> None:
    """The KVM agent dies after the domain is made; the create's rollback stops at the
    domain (it cannot be destroyed) and holds the VM's IP, capacity and disk; a GC job
    finishes the rollback once the host is reconnected (its agent started again)."""
    before = lab.crash.state()
    at = next(i for i, f in enumerate(CREATE_FLOWS) if f.endswith("VmCreateOnHypervisorFlow")) + 1
    lab.crash.lab.service("stop")
    lab.crash.configure({"createVm": [*CREATE_FLOWS[:at], KILL_AGENT_THEN_FAIL]})
    lab.crash.start()
    res = lab.crash.lab.zcli("--no-start", "CreateVmInstance", "name=orphan", *lab.create_args)
    assert res.rc != 0 and "garbage-collection job" in res.out + res.err, res.out + res.err
    held = lab.crash.state()
    assert [name for _id, name in held["journal"]] == ["createVm"]  # kept for the job
    assert len(held["domains"]) == len(before["domains"]) + 1  # the agent could not undo it
    assert len(held["usedIps"]) == len(before["usedIps"]) + 1  # not free while it may run
    [job] = lab.crash.ok("QueryGarbageCollector", "runner=core.gc.flow_rollback.FinishRollbackJob")
    assert job["status"] == "Idle" and job["triggerEvents"], job
    [host] = lab.crash.ok("QueryHost")
    lab.crash.ok("ReconnectHost", f"uuid={host['uuid']}")  # starts the agent again
    deadline = time.monotonic() + 120
    while (now := lab.crash.ok("QueryGarbageCollector", f"uuid={job['uuid']}")[0])[
        "status"
    ] != "Done":
        assert time.monotonic() < deadline, now
        time.sleep(0.5)
    lab.crash.lab.service("stop")
    lab.crash.configure()
    lab.crash.start()
    assert lab.crash.state() == before


# -- the virtual router's chains: last, since they take the network's router away ---------
def _router(lab: Lab) -> dict[str, Any] | None:
    routers = lab.crash.ok("QueryVirtualRouterVm")
    return routers[0] if routers else None


ROUTER_CASES = [
    *(
        (ROUTER_CREATE, killed_at(ROUTER_CHAINS[ROUTER_CREATE], p))
        for p in positions(ROUTER_CHAINS[ROUTER_CREATE])
    ),
    *(
        (ROUTER_CREATE, killed_unwinding_at(ROUTER_CHAINS[ROUTER_CREATE], p))
        for p in positions(ROUTER_CHAINS[ROUTER_CREATE], 1, len(ROUTER_CHAINS[ROUTER_CREATE]))
    ),
    *(
        (ROUTER_POST_CREATE, killed_at(ROUTER_CHAINS[ROUTER_POST_CREATE], p))
        for p in positions(ROUTER_CHAINS[ROUTER_POST_CREATE])
    ),
]


@pytest.mark.parametrize("case", ROUTER_CASES, ids=_case_id)
def test_a_router_create_killed_anywhere_leaves_nothing(
    lab: Lab, case: tuple[str, list[str]]
) -> None:
    """The network has no router; a VM's create makes one and the node dies in the
    router's chain (or in its nested post-create): both creates are rolled back."""
    chain, flows = case
    if (router := _router(lab)) is not None:
        lab.crash.ok("DestroyVirtualRouter", f"uuid={router['uuid']}")
    before = lab.crash.state()
    lab.crash.crash({chain: flows}, "CreateVmInstance", "name=doomed", *lab.create_args)
    assert _after_recovery(lab) == before


@pytest.mark.parametrize(
    "flows",
    [
        killed_at(ROUTER_CHAINS[ROUTER_POST_CREATE], p)
        for p in positions(ROUTER_CHAINS[ROUTER_POST_CREATE])
        if FULL or p == len(ROUTER_CHAINS[ROUTER_POST_CREATE])
    ],
    ids=lambda flows: _case_id((ROUTER_POST_CREATE, flows)),
)
def test_a_router_reconnect_killed_anywhere_runs_on(lab: Lab, flows: list[str]) -> None:
    """A reconnect runs on after the crash: the router serves as before."""
    if _router(lab) is None:  # a VM's create makes the network's router, which stays
        _expunge(lab, lab.create("router-maker"))
    [router] = lab.crash.ok("QueryVirtualRouterVm")
    before = lab.crash.state()
    lab.crash.crash({ROUTER_POST_CREATE: flows}, "ReconnectVirtualRouter", f"uuid={router['uuid']}")
    assert _after_recovery(lab) == before
