"""Data volumes of a running tiny guest through the libvirt backend on qemu:///system:
hot-plug, a live external snapshot while the guest writes, a live pull onto a lower file,
a live resize and a detach, each checked from inside the guest (its serial console) and
from the files (``qemu-img`` with ``-U``).

One guest is booted for the whole file (TCG): its domain is ``zsl-<random uuid>`` and
every file lives in one temp directory under /var/tmp; both go in ``finally``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import libvirt
import pytest

from agent import images
from agent.acceleration import FixedAcceleration
from agent.backend import DataVolumeSpec, VmSpec, VolumeOp, domain_name
from agent.domain_xml import disks_of
from agent.guest_image.build import DEFAULT_OUTPUT, build_image
from agent.libvirt_backend import LibvirtBackend
from agentkit.errors import AgentError
from tests.system.net_lab import why_not_libvirt
from tests.system.test_guest_image import ConsoleReader

pytestmark = pytest.mark.system

URI = "qemu:///system"
MIB = 1024 * 1024
SHELL_TIMEOUT = 90.0
SECTOR = 512


_why_not = why_not_libvirt("live volume operations")
if _why_not:
    pytest.skip(_why_not, allow_module_level=True)


class Guest:
    """The guest's root shell on its serial console."""

    def __init__(self, console: ConsoleReader) -> None:
        self.console = console
        self._ids = itertools.count(1000)

    async def wait_for_shell(self) -> None:
        deadline = time.monotonic() + SHELL_TIMEOUT
        while time.monotonic() < deadline:
            try:
                await self.run("echo ready", timeout=3)
                return
            except AssertionError:
                continue
        raise AssertionError(f"no shell on the console:\n{self.console.text()[-3000:]}")

    async def run(self, command: str, timeout: float = 20.0) -> str:
        """``command``'s output (one line), read between markers the echo cannot hold."""
        n = next(self._ids)
        start = len(self.console.text())
        self.console.send(f'X=$({command} 2>&1); echo "@@$(({n}+0))[$X]@@"')
        pattern = re.compile(rf"@@{n}\[(.*?)\]@@", re.S)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = pattern.search(self.console.text()[start:])
            if match:
                return match.group(1).strip()
            await asyncio.sleep(0.1)
        raise AssertionError(f"no answer to {command!r}:\n{self.console.text()[-2000:]}")

    async def write_marker(self, dev: str, sector: int, marker: str) -> None:
        written = await self.run(
            f"echo {marker} | dd of=/dev/{dev} bs={SECTOR} seek={sector} conv=notrunc,fsync "
            f"&& blockdev --flushbufs /dev/{dev} && sync "
            f"&& dd if=/dev/{dev} bs={SECTOR} skip={sector} count=1 | head -c {len(marker)}"
        )
        assert written.endswith(marker), written

    async def sectors(self, dev: str) -> str:
        return await self.run(f"cat /sys/block/{dev}/size")


def reads_at(path: Path, sector: int, length: int = 16) -> bytes:
    """What ``path`` (its chain) holds at ``sector``, read beside the running QEMU (-U)."""
    raw = path.with_name(path.name + ".raw")
    subprocess.run(
        ["qemu-img", "convert", "-U", "-f", "qcow2", "-O", "raw", str(path), str(raw)], check=True
    )
    try:
        with raw.open("rb") as f:
            f.seek(sector * SECTOR)
            return f.read(length)
    finally:
        raw.unlink()


def virtual_size(path: Path) -> int:
    """The virtual size ``path``'s header on disk gives, read beside QEMU (-U)."""
    out = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return int(json.loads(out)["virtual-size"])


def qcow2(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o711)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size)], check=True)
    path.chmod(0o600)
    return path


@dataclass
class Lab:
    backend: LibvirtBackend
    guest: Guest
    vm_uuid: str
    storage: Path

    def data_dir(self) -> Path:
        return data_dir(self.storage)

    def op(self, path: Path, device_id: int) -> VolumeOp:
        return VolumeOp(str(self.storage), str(path), self.vm_uuid, device_id)

    def disks(self, flags: int = 0) -> dict[str, tuple[str, ...]]:
        """The live domain's disks (their chains), or its definition's (``flags``)."""
        conn = libvirt.open(URI)
        try:
            return disks_of(conn.lookupByName(domain_name(self.vm_uuid)).XMLDesc(flags))
        finally:
            conn.close()

    def defined(self) -> dict[str, str]:
        """The persistent definition's disks: target -> file (what VM_REBOOT starts)."""
        return {dev: c[0] for dev, c in self.disks(libvirt.VIR_DOMAIN_XML_INACTIVE).items()}


def data_dir(storage: Path) -> Path:
    """A data volume's directory, ``datavolumes/vol-<uuid>`` (the core's layout)."""
    directory = storage / "datavolumes" / f"vol-{uuid.uuid4().hex}"
    directory.mkdir(mode=0o711, parents=True)
    return directory


@pytest.fixture
def storage() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="zsl-volume-live-", dir="/var/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def lab(storage: Path) -> AsyncIterator[Lab]:
    build_image(DEFAULT_OUTPUT)
    cache = storage / "imagecache" / "tiny.qcow2"
    cache.parent.mkdir(mode=0o711)
    shutil.copyfile(DEFAULT_OUTPUT, cache)
    cache.chmod(0o600)
    vm_uuid = uuid.uuid4().hex
    root = storage / "rootvolumes" / f"vm-{vm_uuid}" / "root.qcow2"
    await images.create_volume(str(root), str(cache))
    vdb = qcow2(data_dir(storage) / "vdb.qcow2", 16 * MIB)
    backend = LibvirtBackend(URI, probe=FixedAcceleration("tcg"))
    await backend.start()
    conn = libvirt.open(URI)
    console: ConsoleReader | None = None
    try:
        spec = VmSpec(
            vm_uuid=vm_uuid,
            vm_name="volume-live",
            cpu_num=1,
            memory_size=256 * MIB,
            root_volume_path=str(root),
            data_volumes=(DataVolumeSpec(vm_uuid, str(vdb), 1),),
        )
        assert await backend.vm_start(spec) == "Running"
        console = ConsoleReader(conn, conn.lookupByName(domain_name(vm_uuid)))
        guest = Guest(console)
        await guest.wait_for_shell()
        yield Lab(backend, guest, vm_uuid, storage)
    finally:
        if console is not None:
            console.close()
        with contextlib.suppress(AgentError):
            await backend.vm_destroy(vm_uuid)
        await backend.close()
        conn.close()


async def test_a_data_volume_lives_through_plug_snapshot_pull_resize_and_unplug(
    lab: Lab,
) -> None:
    started = time.monotonic()
    guest, backend = lab.guest, lab.backend
    # The volume VM_START gave the domain, with its uuid as serial: the guest sees it.
    assert await guest.sectors("vdb") == str(16 * MIB // SECTOR)
    serial = await guest.run("cat /sys/block/vdb/serial")
    assert serial == lab.vm_uuid[:20]

    # Hot-plug: the guest sees vdc (ACPI PCI hot-plug on i440fx); a repeat is nothing.
    directory = lab.data_dir()
    s0 = qcow2(directory / "s0.qcow2", 8 * MIB)
    volume = DataVolumeSpec(directory.name[4:], str(s0), 2)
    await backend.vm_attach_volume(lab.vm_uuid, volume)
    await backend.vm_attach_volume(lab.vm_uuid, volume)
    deadline = time.monotonic() + 20
    while "No such file" in (size := await guest.sectors("vdc")) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    assert size == str(8 * MIB // SECTOR)
    assert lab.defined()["vdc"] == str(s0)  # a reboot keeps it
    other = DataVolumeSpec(volume.uuid, str(qcow2(directory / "other.qcow2", MIB)), 2)
    with pytest.raises(AgentError, match="at vdc"):
        await backend.vm_attach_volume(lab.vm_uuid, other)

    # Live snapshot: s0 keeps what was written before, the guest goes on writing to s1.
    await guest.write_marker("vdc", 8, "MARK-ONE")
    s1 = directory / "s1.qcow2"
    made = await backend.volume_snapshot(lab.op(s0, 2), str(s1), False)
    assert (made.install_path, made.new_install_path, made.size) == (str(s0), str(s1), 8 * MIB)
    assert await backend.volume_snapshot(lab.op(s0, 2), str(s1), False) == made  # a repeat
    assert lab.disks()["vdc"] == (str(s1), str(s0))
    assert lab.defined()["vdc"] == str(s1)  # libvirt moved the definition along
    # The frozen file reads on disk what the guest wrote (QEMU flushes it as it freezes it).
    assert reads_at(s0, 8).startswith(b"MARK-ONE\n")
    await guest.write_marker("vdc", 8, "MARK-TWO")
    await guest.write_marker("vdc", 16, "SECOND-1")
    assert reads_at(s0, 8).startswith(b"MARK-ONE\n")
    assert reads_at(s1, 8).startswith(b"MARK-TWO\n")
    assert reads_at(s1, 16).startswith(b"SECOND-1\n")

    # A second snapshot, then a live pull of the active file onto s0 (s1 skipped).  The
    # marker in a cluster of s1 the active file never had must be on s2's disk as soon as
    # the pull answers (QEMU's qcow2 metadata cache flushed): s1 may be deleted then.
    await guest.write_marker("vdc", 4096, "PULLED-4")
    s2 = directory / "s2.qcow2"
    await backend.volume_snapshot(lab.op(s1, 2), str(s2), False)
    await guest.write_marker("vdc", 24, "THIRD-22")
    assert lab.disks()["vdc"] == (str(s2), str(s1), str(s0))
    with pytest.raises(AgentError, match="backing file of disk vdc"):
        await backend.volume_rebase(lab.op(s1, 2), "")
    with pytest.raises(AgentError, match=re.escape(f"{s2} stands on it")):
        await backend.volume_delete(str(s1), str(lab.storage), (str(s2),))
    assert await backend.volume_rebase(lab.op(s2, 2), str(s0)) == str(s0)
    assert reads_at(s2, 4096).startswith(b"PULLED-4\n")  # on disk at once
    assert lab.disks()["vdc"] == (str(s2), str(s0))  # libvirt's live chain skips s1 now
    assert lab.defined()["vdc"] == str(s2)
    assert await backend.volume_rebase(lab.op(s2, 2), str(s0)) == str(s0)  # at once
    for sector, marker in ((8, b"MARK-TWO\n"), (16, b"SECOND-1\n"), (24, b"THIRD-22\n")):
        assert reads_at(s2, sector).startswith(marker)
    assert await guest.run(f"dd if=/dev/vdc bs={SECTOR} skip=16 count=1 | head -c 8") == "SECOND-1"
    # s1 is in no chain now: it can go; s0 cannot (s2 stands on it, the VM reads it).
    await backend.volume_delete(str(s1), str(lab.storage), (str(s2),))
    assert not s1.exists()
    with pytest.raises(AgentError, match=re.escape(str(s2))):
        await backend.volume_delete(str(s0), str(lab.storage), (str(s2),))
    with pytest.raises(AgentError, match=r"running VM \w+ reads it"):
        await backend.volume_delete(str(s0), str(lab.storage), ())

    # Live resize: the guest sees the new size; a shrink is refused.
    assert await backend.volume_resize(lab.op(s2, 2), 12 * MIB) == 12 * MIB
    assert virtual_size(s2) == 12 * MIB  # the header on disk says so at once
    assert await backend.volume_resize(lab.op(s2, 2), 12 * MIB) == 12 * MIB
    with pytest.raises(AgentError, match="only grows"):
        await backend.volume_resize(lab.op(s2, 2), 4 * MIB)
    with pytest.raises(AgentError, match="backing file of disk vdc"):
        await backend.volume_resize(lab.op(s0, 2), 16 * MIB)
    deadline = time.monotonic() + 10
    while (size := await guest.sectors("vdc")) != str(12 * MIB // SECTOR):
        assert time.monotonic() < deadline, size
        await asyncio.sleep(0.3)

    # A full snapshot: s2 is made standalone first (a pull with no base), then s3 on it.
    s3 = directory / "s3.qcow2"
    await backend.volume_snapshot(lab.op(s2, 2), str(s3), True)
    assert lab.disks()["vdc"] == (str(s3), str(s2))
    for sector, marker in ((8, b"MARK-TWO\n"), (16, b"SECOND-1\n"), (24, b"THIRD-22\n")):
        assert reads_at(s2, sector).startswith(marker)
    await backend.volume_delete(str(s0), str(lab.storage), (str(s3),))  # in no chain now

    # A file system on the data disk (ext4 in the guest's kernel).
    made_fs = await guest.run(
        "mke2fs -q /dev/vdb && mkdir -p /mnt/d && mount -t ext4 /dev/vdb /mnt/d && "
        "echo kept > /mnt/d/f && umount /mnt/d && echo fs-ok"
    )
    assert made_fs.endswith("fs-ok"), made_fs

    # Detach: the guest lets go of vdc; a repeat finds nothing to do.
    current = DataVolumeSpec(volume.uuid, str(s3), 2)
    with pytest.raises(AgentError, match="not detached"):
        await backend.vm_detach_volume(lab.vm_uuid, volume, 10)  # s0 is not vdc's file now
    await backend.vm_detach_volume(lab.vm_uuid, current, 20)
    assert "vdc" not in lab.disks() and "vdc" not in lab.defined()
    assert "No such file" in await guest.sectors("vdc")
    await backend.vm_detach_volume(lab.vm_uuid, current, 20)

    # A guest that does not answer (paused): an error after the timeout, the disk stays;
    # the unplug asked for goes through once it runs, and a repeat waits for it.
    vdb = DataVolumeSpec(lab.vm_uuid, lab.disks()["vdb"][0], 1)
    assert await backend.vm_pause(lab.vm_uuid) == "Paused"
    with pytest.raises(AgentError, match="did not release vdb"):
        await backend.vm_detach_volume(lab.vm_uuid, vdb, 1)
    assert "vdb" in lab.disks()
    assert await backend.vm_resume(lab.vm_uuid) == "Running"
    await backend.vm_detach_volume(lab.vm_uuid, vdb, 20)
    assert "vdb" not in lab.disks()
    assert "No such file" in await guest.sectors("vdb")
    print(f"volume steps took {time.monotonic() - started:.1f} s")
