"""Data volumes, snapshots and images from VMs on qemu:///system with tiny guests, checked
in the guests (their serial consoles, through the core) and on the host (qemu-img):

- a data volume hot-plugged into a running VM appears in the guest; a file written on it
  survives a detach and an attach to another VM;
- snapshot, overwrite the file, revert (the VM stopped): the old content is back;
- the snapshots of a 3-deep chain of a running VM's volume deleted in every order: the
  running disk and the other snapshots still read what they held, and ``qemu-img check``
  passes on every file left;
- a VM whose root volume has snapshots is stopped, started again and boots;
- an image made from a VM boots a new VM that shows the first VM's marker file.

The node, the tiny guest image and the teardown are test_vm_libvirt's."""

from __future__ import annotations

import asyncio
import itertools
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.kernel.node import ManagementNode
from core.vm.console import open_vm_console
from tests.conftest import ok
from tests.system.test_vm_console import Viewer
from tests.system.test_vm_libvirt import IMAGE, MiB, node  # noqa: F401 - node: the fixture

pytestmark = pytest.mark.system
SECTOR = 512
MARKER_SECTOR = 2048
BOOT_TIMEOUT = 120.0
COMMAND_IDS = itertools.count(100)
"""Unique over every shell: a console's history holds earlier shells' answers."""


class Shell:
    """A tiny guest's root shell: a command's output, read between markers."""

    def __init__(self, viewer: Viewer) -> None:
        self.viewer = viewer

    @classmethod
    async def of(cls, lab_node: ManagementNode, vm: dict[str, Any]) -> Shell:
        """The shell once it answers a command (the console's history may hold an earlier
        boot's prompts, so a prompt alone proves nothing)."""
        shell = cls(Viewer(await open_vm_console(lab_node, vm["uuid"])))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BOOT_TIMEOUT
        while True:
            try:
                await shell.run("echo ready", timeout=3)
                return shell
            except AssertionError:
                if loop.time() > deadline:
                    await shell.close()
                    raise

    async def run(self, command: str, timeout: float = 30.0) -> str:
        n = next(COMMAND_IDS)
        mark = len(self.viewer.output)
        await self.viewer.stream.write(f'X=$({command} 2>&1); echo "@@$(({n}+0))[$X]@@"\n'.encode())
        pattern = re.compile(rf"@@{n}\[(.*?)\]@@".encode(), re.S)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            found = pattern.search(bytes(self.viewer.output[mark:]))
            if found:
                return found.group(1).decode(errors="replace").strip()
            await asyncio.sleep(0.1)
        raise AssertionError(f"no answer to {command!r}: {bytes(self.viewer.output[-1500:])!r}")

    async def wait_for_disk(self, dev: str, present: bool = True) -> None:
        test = f"-e /sys/block/{dev}" if present else f"! -e /sys/block/{dev}"
        answer = await self.run(
            f"i=0; while [ $i -lt 150 ] && ! [ {test} ]; do sleep 0.2; i=$((i+1)); done; "
            f"[ {test} ] && echo yes",
            timeout=45,
        )
        assert answer.endswith("yes"), f"/dev/{dev} {'never came' if present else 'stayed'}"

    async def write_sector(self, dev: str, text: str) -> None:
        written = await self.run(
            f"echo {text} | dd of=/dev/{dev} bs={SECTOR} seek={MARKER_SECTOR} conv=notrunc,fsync "
            f"2>/dev/null && blockdev --flushbufs /dev/{dev} && {self.read_cmd(dev, len(text))}"
        )
        assert written.endswith(text), written

    async def read_sector(self, dev: str, length: int) -> str:
        return await self.run(f"blockdev --flushbufs /dev/{dev} && {self.read_cmd(dev, length)}")

    @staticmethod
    def read_cmd(dev: str, length: int) -> str:
        return (
            f"dd if=/dev/{dev} bs={SECTOR} skip={MARKER_SECTOR} count=1 2>/dev/null "
            f"| head -c {length}"
        )

    async def close(self) -> None:
        await self.viewer.close()


def host_reads(path: str, length: int) -> bytes:
    """What ``path`` (with its chain) holds at the marker, read beside QEMU (-U)."""
    raw = Path(path).with_name(Path(path).name + ".raw-check")
    subprocess.run(
        ["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", path, str(raw)], check=True
    )
    try:
        with raw.open("rb") as f:
            f.seek(MARKER_SECTOR * SECTOR)
            return f.read(length)
    finally:
        raw.unlink()


def qemu_check(path: str) -> None:
    checked = subprocess.run(
        ["qemu-img", "check", "-U", "-f", "qcow2", path], capture_output=True, text=True
    )
    assert checked.returncode == 0, f"qemu-img check {path}: {checked.stdout} {checked.stderr}"


def backing_chain(path: str) -> list[str]:
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--backing-chain", path], capture_output=True, text=True
    ).stdout
    return re.findall(r"^image: (.+)$", out, re.M)


async def make_vm(lab_node: ManagementNode, name: str, image: str, offering: str) -> dict[str, Any]:
    return await ok(  # type: ignore[no-any-return]
        lab_node, "CreateVmInstance", name=name, instanceOfferingUuid=offering, imageUuid=image
    )


async def volume(lab_node: ManagementNode, uuid: str) -> dict[str, Any]:
    [found] = await ok(lab_node, "QueryVolume", conditions=[f"uuid={uuid}"])
    return found  # type: ignore[no-any-return]


async def test_volumes_snapshots_and_images_in_real_guests(node: ManagementNode) -> None:  # noqa: F811
    image = await ok(node, "AddImage", name="tiny", url=str(IMAGE))
    offering = await ok(node, "CreateInstanceOffering", name="t", cpuNum=1, memorySize=256 * MiB)
    a = await make_vm(node, "vol-a", image["uuid"], offering["uuid"])
    b = await make_vm(node, "vol-b", image["uuid"], offering["uuid"])
    shells: list[Shell] = []
    try:
        shell_a, shell_b = await Shell.of(node, a), await Shell.of(node, b)
        shells += [shell_a, shell_b]

        # -- hot-plug into A, a file system and a file on it, detach, attach to B ---------
        data = await ok(node, "CreateDataVolume", name="data", diskSize=32 * MiB)
        await ok(node, "AttachDataVolumeToVm", volumeUuid=data["uuid"], vmInstanceUuid=a["uuid"])
        await shell_a.wait_for_disk("vdb")
        made = await shell_a.run(
            "mke2fs -q /dev/vdb && mkdir -p /mnt && mount /dev/vdb /mnt "
            "&& echo written-in-A > /mnt/marker && umount /mnt && sync && echo made"
        )
        assert made.endswith("made"), made
        await ok(node, "DetachDataVolumeFromVm", uuid=data["uuid"])
        await shell_a.wait_for_disk("vdb", present=False)
        await ok(node, "AttachDataVolumeToVm", volumeUuid=data["uuid"], vmInstanceUuid=b["uuid"])
        await shell_b.wait_for_disk("vdb")
        seen = await shell_b.run("mkdir -p /mnt && mount /dev/vdb /mnt && cat /mnt/marker")
        assert seen.endswith("written-in-A"), seen

        # -- snapshot, overwrite, revert on the stopped VM: the old content is back -----------
        snapshot = await ok(node, "CreateVolumeSnapshot", volumeUuid=data["uuid"], name="before")
        changed = await shell_b.run(
            "echo overwritten > /mnt/marker && sync && cat /mnt/marker && umount /mnt"
        )
        assert "overwritten" in changed, changed
        await shell_b.close()
        shells.remove(shell_b)
        await ok(node, "StopVmInstance", uuid=b["uuid"])
        await ok(node, "RevertVolumeFromSnapshot", uuid=snapshot["uuid"])
        await ok(node, "StartVmInstance", uuid=b["uuid"])
        shell_b = await Shell.of(node, b)
        shells.append(shell_b)
        await shell_b.wait_for_disk("vdb")
        back = await shell_b.run("mkdir -p /mnt && mount /dev/vdb /mnt && cat /mnt/marker")
        assert back.endswith("written-in-A"), back
        await shell_b.run("umount /mnt")
        await ok(node, "DeleteVolumeSnapshot", uuid=snapshot["uuid"])

        # -- a 3-deep chain of B's running volume, its snapshots deleted in every order -------
        chain_volume = await ok(node, "CreateDataVolume", name="chain", diskSize=16 * MiB)
        await ok(
            node, "AttachDataVolumeToVm", volumeUuid=chain_volume["uuid"], vmInstanceUuid=b["uuid"]
        )
        await shell_b.wait_for_disk("vdc")
        for order in itertools.permutations(range(3)):
            tag = "".join(map(str, order))
            generations = [f"gen{k}-{tag}" for k in range(4)]
            snapshots = []
            for k in range(3):
                await shell_b.write_sector("vdc", generations[k])
                snapshots.append(
                    await ok(
                        node,
                        "CreateVolumeSnapshot",
                        volumeUuid=chain_volume["uuid"],
                        name=f"s{k}-{tag}",
                    )
                )
            await shell_b.write_sector("vdc", generations[3])
            alive = set(range(3))
            for k in order:
                await ok(node, "DeleteVolumeSnapshot", uuid=snapshots[k]["uuid"])
                alive.discard(k)
                assert not Path(snapshots[k]["installPath"]).exists(), (order, k)
                length = len(generations[3])
                assert await shell_b.read_sector("vdc", length) == generations[3], (order, k)
                active = (await volume(node, chain_volume["uuid"]))["installPath"]
                assert host_reads(active, length) == generations[3].encode(), (order, k)
                qemu_check(active)
                for left in alive:
                    path = snapshots[left]["installPath"]
                    assert host_reads(path, length) == generations[left].encode(), (order, k, left)
                    qemu_check(path)
            left_files = await ok(
                node, "QueryVolumeSnapshot", conditions=[f"volumeUuid={chain_volume['uuid']}"]
            )
            assert left_files == []
            active = (await volume(node, chain_volume["uuid"]))["installPath"]
            assert backing_chain(active) == [active], backing_chain(active)

        # -- an image from A boots a VM that shows A's marker file ---------------------------
        written = await shell_a.run(
            "mkdir -p /boot && mount -t vfat /dev/vda1 /boot && echo from-vm-a > /boot/MARKER.TXT "
            "&& umount /boot && sync && echo ok"
        )
        assert written.endswith("ok"), written
        # A VM whose root volume has snapshots starts again (its active file stands on
        # snapshot files on the image cache) and boots from it.
        root = (await ok(node, "QueryVmInstance", conditions=[f"uuid={a['uuid']}"]))[0][
            "rootVolumeUuid"
        ]
        for k in range(2):
            await ok(node, "CreateVolumeSnapshot", volumeUuid=root, name=f"root-{k}")
        assert len(backing_chain((await volume(node, root))["installPath"])) == 4
        await shell_a.close()
        shells.remove(shell_a)
        await ok(node, "StopVmInstance", uuid=a["uuid"])
        await ok(node, "StartVmInstance", uuid=a["uuid"])
        shell_a = await Shell.of(node, a)
        shells.append(shell_a)
        shown = await shell_a.run(
            "mkdir -p /boot && mount -t vfat /dev/vda1 /boot && cat /boot/MARKER.TXT "
            "&& umount /boot"
        )
        assert "from-vm-a" in shown, shown
        await shell_a.close()
        shells.remove(shell_a)
        await ok(node, "StopVmInstance", uuid=a["uuid"])
        template = await ok(
            node, "CreateRootVolumeTemplateFromRootVolume", rootVolumeUuid=root, name="from-a"
        )
        assert template["status"] == "Ready"
        c = await make_vm(node, "vol-c", template["uuid"], offering["uuid"])
        shell_c = await Shell.of(node, c)
        shells.append(shell_c)
        shown = await shell_c.run(
            "mkdir -p /boot && mount -t vfat /dev/vda1 /boot && cat /boot/MARKER.TXT"
        )
        assert shown.endswith("from-vm-a"), shown
    finally:
        for shell in shells:
            await shell.close()
        for data_volume in await ok(node, "QueryVolume", conditions=["type=Data"]):
            await node.call("DetachDataVolumeFromVm", {"uuid": data_volume["uuid"]})
            await node.call("DeleteDataVolume", {"uuid": data_volume["uuid"]})
            await node.call("ExpungeDataVolume", {"uuid": data_volume["uuid"]})
        for made_image in await ok(node, "QueryImage", conditions=["name=from-a"]):
            await node.call("DeleteImage", {"uuid": made_image["uuid"]})
            await node.call("ExpungeImage", {"uuid": made_image["uuid"]})
