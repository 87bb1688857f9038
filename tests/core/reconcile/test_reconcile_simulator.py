"""The reconciler over a simulator host: what the database owns is never touched; what it
does not own is kept through the grace period (for ever with Never), then removed, each
removal an event and a step in the operations log; an object owned again is forgotten."""

from __future__ import annotations

import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select

from contracts import kvm
from core.kernel.db import new_uuid
from core.reconcile.models import HostOrphanVO
from core.reconcile.plugin import CHAIN, REMOVE_CHAIN, REMOVED_EVENT
from core.reconcile.tracking import Orphan
from core.vm.models import VmInstanceVO
from tests.conftest import ok
from tests.core.reconcile.conftest import ReconcileLab

ORPHAN_BRIDGE = "zslbr-0rphan0"


async def nic_of(rlab: ReconcileLab, vm: dict[str, Any]) -> dict[str, Any]:
    [nic] = await ok(rlab.node, "QueryVmNic", conditions=[f"vmInstanceUuid={vm['uuid']}"])
    return nic


async def age_orphans(rlab: ReconcileLab, by: timedelta = timedelta(hours=2)) -> None:
    """As if every orphan had been first seen ``by`` earlier."""

    def age(session: Any) -> None:
        for row in session.scalars(select(HostOrphanVO)):
            row.first_seen -= by

    await rlab.node.db.run(age)


def keys(objects: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(o["kind"], o["name"]) for o in objects}


def listed(objects: list[kvm.HostObjectTO] | list[Orphan]) -> set[tuple[str, str]]:
    """``keys`` of what the agent listed (or the orphans among it)."""
    return {(o.kind, o.name) for o in objects}


async def orphan_rows(rlab: ReconcileLab) -> set[tuple[str, str]]:
    return keys(await ok(rlab.node, "QueryHostOrphan"))


async def make_orphans(rlab: ReconcileLab) -> dict[str, str]:
    """On the simulator host, objects of this lab that no row owns: a domain (with a tap),
    a router (its 'namespace'), a bridge with a host NAT entry, and files under primary
    storage.  Their names, by kind."""
    ps = rlab.net.lab.primary_url
    vm = new_uuid()
    volume = ps / "rootvolumes" / f"vm-{vm}" / "root.qcow2"
    volume.parent.mkdir(parents=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(volume), "16M"], check=True)
    await rlab.agent_call(kvm.BRIDGE_CREATE, {"bridgeName": ORPHAN_BRIDGE})
    await rlab.agent_call(
        kvm.HOSTNAT_SET, {"bridgeName": ORPHAN_BRIDGE, "gatewayCidr": "192.0.2.1/24"}
    )
    await rlab.agent_call(
        kvm.VM_START,
        {
            "vmUuid": vm, "cpuNum": 1, "memorySize": 64 * 1024**2,
            "rootVolume": {"installPath": str(volume), "format": "qcow2"},
            "nics": [{"mac": "52:54:00:aa:bb:cc", "bridgeName": ORPHAN_BRIDGE,
                      "deviceName": f"zslt{vm[:9]}0"}],
            "consoleLogPath": str(ps / "consoles" / f"{vm}.log"),
        },
    )  # fmt: skip
    router = new_uuid()
    await rlab.agent_call(
        kvm.APPLIANCE_CREATE,
        {
            "applianceUuid": router,
            "nics": [{"bridgeName": ORPHAN_BRIDGE, "mac": "52:54:00:aa:bb:cd", "ip": "192.0.2.2",
                      "prefixLength": 24, "role": "public"}],
        },
    )  # fmt: skip
    cache = ps / "imagecache" / f"{new_uuid()}.qcow2"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_bytes(b"")
    return {
        "domain": f"zsl-{vm}",
        "tap": f"zslt{vm[:9]}0",
        "namespace": f"zsl-vr-{router[:9]}",
        "bridge": ORPHAN_BRIDGE,
        "hostNat": f"{ORPHAN_BRIDGE} 192.0.2.1/24",
        "volumes": str(volume.parent),
        "console": str(ps / "consoles" / f"{vm}.log"),
        "cache": str(cache),
    }


async def test_owned_objects_are_never_touched(rlab: ReconcileLab) -> None:
    node = rlab.node
    running = await rlab.net.create_vm("running")
    stopped = await rlab.net.create_vm("stopped")
    await ok(node, "StopVmInstance", uuid=stopped["uuid"])
    destroyed = await rlab.net.create_vm("destroyed")
    await ok(node, "DestroyVmInstance", uuid=destroyed["uuid"])  # Delay: not expunged
    router = await rlab.net.router()
    assert router is not None
    await rlab.set_grace("0")  # an orphan would go at once

    run = (await rlab.reconciler.reconcile_all())[rlab.host_uuid]

    assert run.orphans == [] and run.removed == []
    assert await orphan_rows(rlab) == set()
    seen = listed(run.objects)
    for vm in (running, stopped):
        assert ("domain", f"zsl-{vm['uuid']}") in seen
        assert ("file", str(rlab.net.lab.primary_url / "consoles" / f"{vm['uuid']}.log")) in seen
    nic = await nic_of(rlab, running)
    assert ("tap", nic["internalName"]) in seen
    assert ("namespace", f"zsl-vr-{router['uuid'][:9]}") in seen
    assert {o.kind for o in run.objects} >= {
        "domain", "tap", "namespace", "bridge", "hostNat", "file"
    }  # fmt: skip
    assert any(o.detail == "image cache" for o in run.objects)
    assert any(o.name.endswith(f"vm-{destroyed['uuid']}") for o in run.objects)
    # everything still works: the router serves, the VMs are as they were
    assert (await ok(node, "QueryVmInstance", conditions=[f"uuid={running['uuid']}"]))[0][
        "state"
    ] == "Running"
    assert nic["mac"] in await rlab.net.served()


async def test_orphans_are_kept_with_never_and_removed_after_the_grace_period(
    rlab: ReconcileLab,
) -> None:
    node = rlab.node
    vm = await rlab.net.create_vm("owned")
    names = await make_orphans(rlab)
    removed: list[dict[str, Any]] = []
    node.events.subscribe(REMOVED_EVENT, lambda event: removed.append(event.data))

    await rlab.set_grace("Never")
    for _ in range(2):
        run = (await rlab.reconciler.reconcile_all())[rlab.host_uuid]
        assert run.removed == []
    expected = {
        ("domain", names["domain"]), ("tap", names["tap"]), ("namespace", names["namespace"]),
        ("bridge", names["bridge"]), ("hostNat", names["hostNat"]),
        ("file", names["volumes"]), ("file", names["console"]), ("file", names["cache"]),
    }  # fmt: skip
    assert await orphan_rows(rlab) == expected
    assert Path(names["cache"]).exists() and Path(names["volumes"]).is_dir()

    await rlab.set_grace("3600")
    run = (await rlab.reconciler.reconcile_all())[rlab.host_uuid]
    assert run.removed == [] and await orphan_rows(rlab) == expected

    # the grace period is counted from the first sight, kept in the database
    await age_orphans(rlab)
    run = (await rlab.reconciler.reconcile_all())[rlab.host_uuid]
    # the tap went with its domain (or by itself): either way it is gone
    assert listed(run.removed) | {("tap", names["tap"])} == expected
    assert keys(removed) == listed(run.removed)
    assert all(e["hostUuid"] == rlab.host_uuid and e["firstSeen"] for e in removed)
    assert await orphan_rows(rlab) == set()
    assert not Path(names["cache"]).exists() and not Path(names["volumes"]).exists()
    after = listed((await rlab.reconciler.reconcile_all())[rlab.host_uuid].objects)
    assert not after & expected
    # the owned VM, its network and router are untouched
    assert ("domain", f"zsl-{vm['uuid']}") in after
    assert (await nic_of(rlab, vm))["mac"] in await rlab.net.served()

    # each removal is a step of the operations log, under the background chain
    ops = await ok(node, "QueryOperationLog", conditions=[f"name={CHAIN}"])
    steps = {
        step["name"]
        for op in ops
        for chain in op["chains"]
        if chain["name"] == REMOVE_CHAIN
        for step in chain["steps"]
    }
    assert f"remove domain {names['domain']}" in steps
    assert f"remove namespace {names['namespace']}" in steps


async def test_an_object_owned_again_before_its_grace_ends_is_forgotten(
    rlab: ReconcileLab,
) -> None:
    node = rlab.node
    names = await make_orphans(rlab)
    vm_uuid = names["domain"].removeprefix("zsl-")
    await rlab.set_grace("3600")
    await rlab.reconciler.reconcile_all()
    first = await node.db.run(
        lambda s: s.scalar(select(HostOrphanVO.first_seen).where(HostOrphanVO.kind == "domain"))
    )
    assert first is not None

    def own(session: Any) -> None:
        session.add(VmInstanceVO(uuid=vm_uuid, name="late", cpu_num=1, memory_size=64 * 1024**2))

    await node.db.run(own)  # e.g. a create whose row came late
    await rlab.reconciler.reconcile_all()
    rows = await orphan_rows(rlab)
    assert ("domain", names["domain"]) not in rows
    assert ("tap", names["tap"]) not in rows  # the tap names the VM
    assert ("file", names["volumes"]) not in rows and ("bridge", names["bridge"]) in rows

    await node.db.run(lambda s: s.delete(s.get(VmInstanceVO, vm_uuid)))
    await age_orphans(rlab)
    run = (await rlab.reconciler.reconcile_all())[rlab.host_uuid]
    # orphaned again: a new grace period, so the domain stays; the bridge's has ended
    assert ("domain", names["domain"]) in listed(run.orphans)
    assert ("domain", names["domain"]) not in listed(run.removed)
    assert ("bridge", names["bridge"]) in listed(run.removed)


async def test_the_agent_refuses_what_is_not_this_labs(rlab: ReconcileLab) -> None:
    answer = await rlab.agent_call(
        kvm.LAB_REMOVE,
        {"objects": [{"kind": "bridge", "name": "zslbr-n0tm1ne"}, {"kind": "file",
                     "name": "/etc/hostname"}]},
    )  # fmt: skip
    assert answer["removed"] == [] and len(answer["refused"]) == 2
    assert Path("/etc/hostname").exists()
