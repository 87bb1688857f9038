"""Live volume snapshots: CreateVolumeSnapshot of a running VM's disk vs ``virsh
snapshot-create-as --disk-only``; RevertVolumeFromSnapshot and DeleteVolumeSnapshot timed.

Run: ``.venv/bin/python bench/volume_snapshot.py`` (or ``make bench-volume-snapshot``; needs
root, libvirtd and ``build/tiny-guest.qcow2``, which ``make guest-image`` builds).

The lab is bench/vm_libvirt.py's (a management node in this process on a data dir under
/var/tmp, the local KVM host on its real agent, local storage, the tiny guest, a 1-CPU,
256-MiB offering).  Two running VMs, each with a 64-MiB data volume hot-plugged:
A is the API's, B is virsh's (B's chains change behind the core's back, so B is
thrown away at the end with everything else).  Measured, side by side in one run:

(1) live snapshot, ROUNDS rounds, the sides interleaved (the order flips every round),
    of the data volume and of the root volume:
    (a) ``CreateVolumeSnapshot`` of A's volume through ``node.call`` in-process, from the
        call to its reply (the core's chain, the agent's chain checks, its ``qemu-img
        create`` of the overlay, libvirt's ``snapshotCreateXML`` disk-only, no-metadata,
        reuse-ext);
    (b) ``virsh snapshot-create-as --disk-only --no-metadata --atomic`` on B, the disk
        ``snapshot=external`` onto a new file beside its active one (libvirt makes it),
        every other disk ``snapshot=no``, until the command exits.
    After every run, outside the time, both sides are checked for the same result: the
    domain's live XML has the new file as the disk's source, and the chain (live XML and
    ``qemu-img info -U --backing-chain``) is one file longer.  One run per side is a
    warm-up, not counted.
(2) revert (no target): with A stopped, ``RevertVolumeFromSnapshot`` of its data volume
    to one of its snapshots, REVERTS times; beside it, the same on files by hand
    (``qemu-img create -b <snapshot>`` of the new active file, the old one removed).
(3) delete (no target), DELETE_ROUNDS rounds, on two fresh VMs C (the API's) and D (by
    hand's), since A no longer starts (its root volume has snapshots: see the README):
    fresh 64-MiB data volumes whose chains are built through the API with the VMs
    stopped (4 MiB written with ``qemu-io`` before each of 3 snapshots and after the
    last, at four offsets), then ``DeleteVolumeSnapshot`` of the middle snapshot: offline
    (C stopped), and live (C running: the active file is pulled live past it, its child
    rebased offline).  Beside them, the same by hand: offline ``qemu-img rebase`` of the
    child + ``rm`` on a chain of files made by hand; live ``virsh blockpull --base`` on
    D's disk + ``qemu-img rebase -U`` of the child + ``rm``.
    Each volume's content is compared with what it held before (``qemu-img compare``; the
    live ones once their VM is stopped, see the README).

Medians and the ratio API / virsh are printed with the target, never asserted.  Every
domain and file made here is removed at the end, and the agent this run started is
stopped, whatever happens.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from vm_libvirt import BenchError, Lab, median_ms, ok, on_libvirt, virsh

from agent.domain_xml import disks_of

MiB = 1024**2
ROUNDS = 10
REVERTS = 5
DELETE_ROUNDS = 3
VOLUME_SIZE = 64 * MiB
LAYER = 4 * MiB  # written before each snapshot of a delete chain, and after the last
RATIO_TARGET = 1.3


def run_tool(*args: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def chain_length(path: str) -> int:
    """Files in ``path``'s backing chain, read beside a running QEMU (-U)."""
    out = run_tool("qemu-img", "info", "-U", "--backing-chain", "--output=json", path)
    return len(json.loads(out))


def backing_of(path: str) -> str:
    out = json.loads(run_tool("qemu-img", "info", "-U", "--output=json", path))
    return str(out.get("full-backing-filename") or out.get("backing-filename") or "")


def write_layer(path: str, offset: int, pattern: int) -> None:
    """LAYER bytes of ``pattern`` at ``offset`` into a qcow2 no QEMU holds."""
    run_tool("qemu-io", "-f", "qcow2", "-c", f"write -q -P {pattern} {offset} {LAYER}", path)


def snapshot_of_raw(path: str, out: Path) -> Path:
    """What ``path`` reads now, as a raw file (the content check's reference)."""
    run_tool("qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", path, str(out))
    return out


def same_content(path: str, reference: Path) -> None:
    done = subprocess.run(
        ["qemu-img", "compare", "-U", "-f", "qcow2", "-F", "raw", path, str(reference)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise BenchError(f"{path} no longer reads as before: {done.stdout.strip()}")


def live_disks(domain: str) -> dict[str, tuple[str, ...]]:
    return disks_of(virsh("dumpxml", domain))


class SnapLab(Lab):
    """vm_libvirt's lab, with the VMs, volumes and helpers of this benchmark."""

    async def vm(self, name: str) -> str:
        vm_uuid = (await self.api_create(name))[1]
        return vm_uuid

    async def volume(self, name: str, vm_uuid: str) -> str:
        assert self.node is not None
        vol = await ok(self.node, "CreateDataVolume", name=name, diskSize=VOLUME_SIZE)
        await ok(self.node, "AttachDataVolumeToVm", volumeUuid=vol["uuid"], vmInstanceUuid=vm_uuid)
        return str(vol["uuid"])

    async def install_path(self, volume_uuid: str) -> str:
        assert self.node is not None
        [vol] = await ok(self.node, "QueryVolume", conditions=[f"uuid={volume_uuid}"])
        return str(vol["installPath"])

    async def root_volume(self, vm_uuid: str) -> str:
        assert self.node is not None
        [vol] = await ok(
            self.node, "QueryVolume", conditions=[f"vmInstanceUuid={vm_uuid}", "type=Root"]
        )
        return str(vol["uuid"])

    async def snapshot(self, volume_uuid: str, name: str) -> tuple[float, str]:
        assert self.node is not None
        t0 = time.perf_counter()
        snap = await ok(self.node, "CreateVolumeSnapshot", volumeUuid=volume_uuid, name=name)
        return time.perf_counter() - t0, str(snap["uuid"])

    async def snapshot_path(self, snapshot_uuid: str) -> str:
        assert self.node is not None
        [snap] = await ok(self.node, "QueryVolumeSnapshot", conditions=[f"uuid={snapshot_uuid}"])
        return str(snap["installPath"])

    async def start_vm(self, vm_uuid: str) -> None:
        await self.api_start(vm_uuid)

    async def stop_vm(self, vm_uuid: str) -> None:
        await self.api_stop(vm_uuid)


class Disk:
    """One disk of a running domain, followed through its snapshots."""

    def __init__(self, domain: str, active: str) -> None:
        self.domain = domain
        self.target = next(t for t, c in live_disks(domain).items() if c and c[0] == active)
        self.active = active
        self.length = chain_length(active)

    def check(self, new_active: str) -> None:
        """The disk runs on ``new_active`` now, an overlay of the active file before."""
        chain = live_disks(self.domain).get(self.target, ())
        if not chain or chain[0] != new_active or chain[1:2] != (self.active,):
            raise BenchError(
                f"{self.domain} {self.target}: live chain {chain}, expected {new_active} on "
                f"{self.active}"
            )
        length = chain_length(new_active)
        if length != self.length + 1 or len(chain) != length:
            raise BenchError(
                f"{self.domain} {self.target}: chain of {length} files (live XML {len(chain)}), "
                f"expected {self.length + 1}"
            )
        self.active, self.length = new_active, length


async def api_side(lab: SnapLab, disk: Disk, volume_uuid: str, name: str) -> float:
    elapsed, _ = await lab.snapshot(volume_uuid, name)
    disk.check(await lab.install_path(volume_uuid))
    return elapsed


def virsh_side(disk: Disk, n: int) -> float:
    new = str(Path(disk.active).with_name(f"bench-virsh-{disk.target}-{n}.qcow2"))
    specs: list[str] = []
    for target in live_disks(disk.domain):
        spec = "snapshot=external,file=" + new if target == disk.target else "snapshot=no"
        specs += ["--diskspec", f"{target},{spec}"]
    t0 = time.perf_counter()
    virsh(
        "snapshot-create-as", "--domain", disk.domain, "--disk-only", "--no-metadata",
        "--atomic", *specs,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    disk.check(new)
    return elapsed


async def measure_create(
    lab: SnapLab, vm_a: str, vm_b: str, vols: dict[str, tuple[str, str]]
) -> dict[str, dict[str, list[float]]]:
    """(1): per kind ("data", "root"), the API's and virsh's seconds per snapshot."""
    disks = {
        kind: (
            Disk(f"zsl-{vm_a}", await lab.install_path(a)),
            Disk(f"zsl-{vm_b}", await lab.install_path(b)),
        )
        for kind, (a, b) in vols.items()
    }
    times: dict[str, dict[str, list[float]]] = {k: {"api": [], "virsh": []} for k in vols}
    for i in range(-1, ROUNDS):  # round -1: the warm-up
        order = ("api", "virsh") if i % 2 == 0 else ("virsh", "api")
        for kind, (vol_a, _) in vols.items():
            disk_a, disk_b = disks[kind]
            for side in order:
                if side == "api":
                    took = await api_side(lab, disk_a, vol_a, f"{kind}-{i + 1}")
                else:
                    took = virsh_side(disk_b, i + 1)
                if i >= 0:
                    times[kind][side].append(took)
        if i >= 0:
            print(
                f"  snapshot round {i + 1}: "
                + ", ".join(
                    f"{kind} API {t['api'][-1] * 1e3:.0f} ms / virsh {t['virsh'][-1] * 1e3:.0f} ms"
                    for kind, t in times.items()
                )
                + f" (chains of {disks['data'][0].length} files)"
            )
    return times


def hand_chain(root: Path, name: str) -> list[Path]:
    """base <- s1 <- s2 <- active, LAYER written into each before the next is made."""
    files = [root / f"{name}-{i}.qcow2" for i in range(4)]
    run_tool("qemu-img", "create", "-q", "-f", "qcow2", str(files[0]), str(VOLUME_SIZE))
    for i, path in enumerate(files):
        if i:
            run_tool(
                "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2",
                "-b", str(files[i - 1]), str(path),
            )  # fmt: skip
        write_layer(str(path), i * 8 * MiB, 0x11 * (i + 1))
    return files


async def measure_revert(lab: SnapLab, volume_uuid: str, scratch: Path) -> dict[str, list[float]]:
    """(2), with A stopped: RevertVolumeFromSnapshot vs qemu-img create -b + rm."""
    assert lab.node is not None
    snaps = await ok(
        lab.node,
        "QueryVolumeSnapshot",
        conditions=[f"volumeUuid={volume_uuid}"],
        sortBy="createDate",
    )
    hand = hand_chain(scratch, "revert")
    times: dict[str, list[float]] = {"api": [], "hand": []}
    active = hand[-1]
    for i in range(REVERTS):
        target = snaps[(i * 3 + 2) % len(snaps)]
        t0 = time.perf_counter()
        await ok(lab.node, "RevertVolumeFromSnapshot", uuid=target["uuid"])
        times["api"].append(time.perf_counter() - t0)
        now = await lab.install_path(volume_uuid)
        if backing_of(now) != target["installPath"]:
            raise BenchError(f"after the revert, {now} stands on {backing_of(now)}")

        new = scratch / f"revert-new-{i}.qcow2"
        base = hand[i % 3]
        t0 = time.perf_counter()
        run_tool(
            "qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(new)
        )
        active.unlink()
        times["hand"].append(time.perf_counter() - t0)
        active = new
        print(
            f"  revert {i + 1}: API {times['api'][-1] * 1e3:.0f} ms, "
            f"by hand {times['hand'][-1] * 1e3:.0f} ms"
        )
    return times


async def api_chain(lab: SnapLab, volume_uuid: str) -> list[str]:
    """Three snapshots of a volume whose VM is stopped, LAYER written before each and after
    the last, at a new offset each time; the snapshots' uuids, oldest first."""
    snaps = []
    for i in range(4):
        write_layer(await lab.install_path(volume_uuid), i * 8 * MiB, 0x21 * (i + 1))
        if i < 3:
            snaps.append((await lab.snapshot(volume_uuid, f"chain-{i + 1}"))[1])
    return snaps


async def measure_delete(
    lab: SnapLab, vm_a: str, vm_b: str, scratch: Path
) -> dict[str, list[float]]:
    """(3): the middle snapshot of a 3-deep chain deleted offline and live, API and by hand."""
    assert lab.node is not None
    times: dict[str, list[float]] = {
        k: [] for k in ("api off", "hand off", "api live", "hand live")
    }
    for r in range(DELETE_ROUNDS):
        off_a = await lab.volume(f"del-off-{r}", vm_a)
        live_a = await lab.volume(f"del-live-{r}", vm_a)
        live_b = await lab.volume(f"del-live-{r}", vm_b)
        chains = {v: await api_chain(lab, v) for v in (off_a, live_a, live_b)}
        refs = {v: snapshot_of_raw(await lab.install_path(v), scratch / f"{v}.raw") for v in chains}

        # offline: the API on A's volume, by hand on a chain of files made by hand
        t0 = time.perf_counter()
        await ok(lab.node, "DeleteVolumeSnapshot", uuid=chains[off_a][1])
        times["api off"].append(time.perf_counter() - t0)
        same_content(await lab.install_path(off_a), refs[off_a])
        hand = hand_chain(scratch, f"delete-{r}")
        hand_ref = snapshot_of_raw(str(hand[-1]), scratch / f"delete-{r}.raw")
        t0 = time.perf_counter()
        run_tool(
            "qemu-img", "rebase", "-f", "qcow2", "-F", "qcow2", "-b", str(hand[0]), str(hand[2])
        )
        hand[1].unlink()
        times["hand off"].append(time.perf_counter() - t0)
        same_content(str(hand[-1]), hand_ref)

        # live: A and B running; the API on A's volume, by hand on B's (behind the core's back)
        await lab.start_vm(vm_a)
        await lab.start_vm(vm_b)
        t0 = time.perf_counter()
        await ok(lab.node, "DeleteVolumeSnapshot", uuid=chains[live_a][1])
        times["api live"].append(time.perf_counter() - t0)

        files = [await lab.snapshot_path(s) for s in chains[live_b]]
        active_b = await lab.install_path(live_b)
        domain_b = f"zsl-{vm_b}"
        target = next(t for t, c in live_disks(domain_b).items() if c and c[0] == active_b)
        t0 = time.perf_counter()
        virsh("blockpull", domain_b, target, "--base", files[0], "--wait")
        run_tool("qemu-img", "rebase", "-U", "-f", "qcow2", "-F", "qcow2", "-b", files[0], files[2])
        os.unlink(files[1])
        times["hand live"].append(time.perf_counter() - t0)
        chain = live_disks(domain_b)[target]
        if chain[:2] != (active_b, files[0]):
            raise BenchError(f"after the pull, {domain_b} {target} runs on {chain}")
        # Read once QEMU is gone: after a pull the file's qcow2 metadata is in QEMU's cache,
        # and what the disk holds reads zeros where the pulled data is (see the README).
        await lab.stop_vm(vm_a)
        await lab.stop_vm(vm_b)
        same_content(await lab.install_path(live_a), refs[live_a])
        same_content(active_b, refs[live_b])
        print(
            f"  delete round {r + 1}: offline API {times['api off'][-1] * 1e3:.0f} ms / "
            f"by hand {times['hand off'][-1] * 1e3:.0f} ms; live API "
            f"{times['api live'][-1] * 1e3:.0f} ms / by hand {times['hand live'][-1] * 1e3:.0f} ms"
        )
    return times


async def run(lab: SnapLab) -> None:
    await lab.start()
    vm_a, vm_b = await lab.vm("snap-api"), await lab.vm("snap-virsh")
    data = {"data": (await lab.volume("data-api", vm_a), await lab.volume("data-virsh", vm_b))}
    vols = {**data, "root": (await lab.root_volume(vm_a), await lab.root_volume(vm_b))}
    scratch = lab.root / "by-hand"
    scratch.mkdir(mode=0o755)

    create = await measure_create(lab, vm_a, vm_b, vols)
    await lab.stop_vm(vm_a)
    await lab.stop_vm(vm_b)
    revert = await measure_revert(lab, data["data"][0], scratch)
    # Fresh VMs for the deletes: a VM whose root volume has snapshots does not start again
    # (the agent's VM_START takes only a root volume of two files: see the README).
    vm_c, vm_d = await lab.vm("snap-delete-api"), await lab.vm("snap-delete-hand")
    await lab.stop_vm(vm_c)
    await lab.stop_vm(vm_d)
    delete = await measure_delete(lab, vm_c, vm_d, scratch)
    print()

    header = f"{'operation':<52} {'API ms':>8} {'virsh ms':>9} {'API/virsh':>10}"
    print(f"medians of {ROUNDS} snapshots per side (chains of 2 to {ROUNDS + 2} files)")
    print(header)
    print("-" * len(header))
    for kind, t in create.items():
        api, by_hand = median_ms(t["api"]), median_ms(t["virsh"])
        label = f"live snapshot, {kind} volume"
        print(f"{label:<52} {api:>8.0f} {by_hand:>9.0f} {api / by_hand:>9.2f}x")
    print()
    print(f"no target; medians of {REVERTS} reverts and {DELETE_ROUNDS} deletes")
    header = f"{'operation':<52} {'API ms':>8} {'hand ms':>9} {'API/hand':>10}"
    print(header)
    print("-" * len(header))
    rows = (
        ("revert, VM stopped (hand: qemu-img create -b, rm)", revert["api"], revert["hand"]),
        ("delete middle of 3, offline (hand: rebase, rm)", delete["api off"], delete["hand off"]),
        ("delete middle of 3, live (hand: blockpull+rebase+rm)", delete["api live"],
         delete["hand live"]),
    )  # fmt: skip
    for label, api_s, hand_s in rows:
        api, by_hand = median_ms(api_s), median_ms(hand_s)
        print(f"{label:<52} {api:>8.0f} {by_hand:>9.0f} {api / by_hand:>9.2f}x")
    print()
    for kind, t in create.items():
        ratio = statistics.median(t["api"]) / statistics.median(t["virsh"])
        print(
            f"target: live snapshot ({kind} volume) API/virsh <= {RATIO_TARGET}x: "
            f"{'HOLDS' if ratio <= RATIO_TARGET else 'MISSED'} ({ratio:.2f}x)"
        )


async def main() -> int:
    return await on_libvirt("volume snapshot benchmark", "zsl-bench-snap-", SnapLab, run)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
