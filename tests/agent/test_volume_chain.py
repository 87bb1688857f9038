"""Snapshots, rebases, resizes, chains, exports and guarded deletes of a volume's qcow2
chain, offline: the simulator agent over HTTP, real ``qemu-img`` on files under a
primary storage directory in tmp.  The data is checked, not just the headers: each layer
writes its own marker (``qemu-io``) and every file must read the same after each step."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from agent import images, volume_chain
from agentkit.errors import AgentError
from contracts import kvm as p
from tests.agent.crafted_images import host_secret
from tests.agent.helpers import AgentCaller, wait_until
from tests.agent.test_simulator import start_body

MIB = 1024 * 1024
CLUSTER = 64 * 1024


# -- helpers -------------------------------------------------------------------------
def run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True)
    assert done.returncode == 0, f"{' '.join(argv)}: {done.stderr}"
    return done.stdout


def make_qcow2(path: Path, size: int = MIB, backing: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    options = ["-F", "qcow2", "-b", str(backing)] if backing else []
    run(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        *options,
        str(path),
        *([] if backing else [str(size)]),
    )
    return path


def write(path: Path, offset: int, pattern: int, length: int = CLUSTER) -> None:
    run("qemu-io", "-f", "qcow2", "-c", f"write -P {pattern} {offset} {length}", str(path))


def reads(path: Path) -> bytes:
    """What the guest would read from ``path`` (its chain flattened)."""
    raw = path.with_name(path.name + ".raw")
    run("qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(path), str(raw))
    try:
        return raw.read_bytes()
    finally:
        raw.unlink()


def backing_of(path: Path) -> str:
    found = json.loads(run("qemu-img", "info", "--output=json", "-U", str(path)))
    return str(found.get("backing-filename", ""))


def check_clean(path: Path) -> None:
    run("qemu-img", "check", "-q", "-f", "qcow2", str(path))


def leftovers(directory: Path) -> list[str]:
    return sorted(n for n in os.listdir(directory) if n.startswith("."))


@pytest.fixture
def storage(tmp_path: Path) -> Path:
    path = tmp_path / "ps"
    (path / "datavolumes").mkdir(parents=True)
    return path


@pytest.fixture
def vol_dir(storage: Path) -> Path:
    directory = storage / "datavolumes" / f"vol-{uuid.uuid4().hex}"
    directory.mkdir()
    return directory


def op(storage: Path, install_path: Path, **extra: Any) -> dict[str, Any]:
    return {"storagePath": str(storage), "installPath": str(install_path), **extra}


async def snapshot(
    caller: AgentCaller, storage: Path, active: Path, new: Path, full: bool = False
) -> dict[str, Any]:
    body = op(storage, active, newInstallPath=str(new), full=full)
    return await caller.ok(p.VOLUME_SNAPSHOT, body)


async def refused(caller: AgentCaller, path: str, body: dict[str, Any], match: str) -> str:
    answer = await caller.call(path, body)
    assert answer["success"] is False, answer
    assert match in answer["error"], answer["error"]
    return str(answer["error"])


async def three_deep(caller: AgentCaller, storage: Path, vol_dir: Path) -> list[Path]:
    """a <- b <- c <- d (d active), each layer with its markers: a writes clusters 0-1,
    b 1-2, c 2-3 and d 3-4 (each overwriting the one below at its first cluster)."""
    files = [make_qcow2(vol_dir / "a.qcow2")]
    for name in "bcd":
        new = vol_dir / f"{name}.qcow2"
        await snapshot(caller, storage, files[-1], new)
        files.append(new)
    # Each layer's markers go straight into its file (what a guest writing between the
    # snapshots would have left there).
    for i, path in enumerate(files):
        write(path, i * CLUSTER, 0xA0 + i)
        write(path, (i + 1) * CLUSTER, 0xB0 + i)
    return files


# -- snapshot --------------------------------------------------------------------------
async def test_a_snapshot_makes_an_overlay_and_a_repeat_answers_it(
    caller: AgentCaller, storage: Path, vol_dir: Path
) -> None:
    base = make_qcow2(vol_dir / "base.qcow2")
    write(base, 0, 0x11)
    new = vol_dir / "s1.qcow2"
    first = await snapshot(caller, storage, base, new)
    assert first["installPath"] == str(base) and first["newInstallPath"] == str(new)
    assert first["size"] == MIB and first["actualSize"] > 0
    assert backing_of(new) == str(base)
    assert (new.stat().st_mode & 0o777) == 0o600
    assert leftovers(vol_dir) == []
    before = new.read_bytes()
    assert await snapshot(caller, storage, base, new) == first  # a repeat: as made
    assert new.read_bytes() == before
    write(new, CLUSTER, 0x22)
    assert reads(base)[:CLUSTER] == b"\x11" * CLUSTER
    assert reads(new)[: 2 * CLUSTER] == b"\x11" * CLUSTER + b"\x22" * CLUSTER

    # Another file at the new path is not an overlay of base: refused, left alone.
    other = make_qcow2(vol_dir / "other.qcow2")
    await refused(
        caller, p.VOLUME_SNAPSHOT, op(storage, base, newInstallPath=str(other)), "not an overlay"
    )
    # A crash between the temporary file and the link left only the temporary file.
    leftover = vol_dir / ".s2.qcow2.creating"
    leftover.write_bytes(b"half")
    await snapshot(caller, storage, new, vol_dir / "s2.qcow2")
    assert leftovers(vol_dir) == []
    chain = await caller.ok(
        p.VOLUME_CHAIN, {"storagePath": str(storage), "installPaths": [str(vol_dir / "s2.qcow2")]}
    )
    assert chain["chains"] == {str(vol_dir / "s2.qcow2"): [str(new), str(base)]}


async def test_a_full_snapshot_starts_a_new_chain(
    caller: AgentCaller, storage: Path, vol_dir: Path
) -> None:
    files = await three_deep(caller, storage, vol_dir)
    top = files[-1]
    expected = reads(top)
    new = vol_dir / "e.qcow2"
    await snapshot(caller, storage, top, new, full=True)
    assert backing_of(top) == ""  # the old active file holds all its data now
    assert backing_of(new) == str(top)
    assert reads(top) == expected and reads(new) == expected
    check_clean(top)


# -- rebase and delete -------------------------------------------------------------------
@pytest.mark.parametrize("order", list(itertools.permutations("abc")))
async def test_layers_go_in_any_order_and_every_file_reads_the_same(
    caller: AgentCaller, storage: Path, vol_dir: Path, order: tuple[str, ...]
) -> None:
    files = {f.stem: f for f in await three_deep(caller, storage, vol_dir)}
    expected = {name: reads(path) for name, path in files.items()}
    assert len(set(expected.values())) == 4  # each layer reads differently
    for name in order:
        gone = files.pop(name)
        child = next(f for f in files.values() if backing_of(f) == str(gone))
        keep = [str(f) for f in files.values()]
        delete = {"installPath": str(gone), "storagePath": str(storage), "keepIfBacking": keep}
        error = await refused(caller, p.VOLUME_DELETE, delete, " on it")
        assert str(child) in error
        below = backing_of(gone)
        body = op(storage, child, backingFile=below)
        answer = await caller.ok(p.VOLUME_REBASE, body)
        assert answer == {
            "success": True,
            "error": "",
            "installPath": str(child),
            "backingFile": below,
        }
        assert await caller.ok(p.VOLUME_REBASE, body) == answer  # a repeat answers at once
        assert backing_of(child) == below
        await caller.ok(p.VOLUME_DELETE, delete)
        assert not gone.exists()
        await caller.ok(p.VOLUME_DELETE, delete)  # idempotent
        for remaining, path in files.items():
            assert reads(path) == expected[remaining], f"{remaining} after removing {name}"
            check_clean(path)
    assert list(files) == ["d"] and backing_of(files["d"]) == ""
    assert sorted(os.listdir(vol_dir)) == ["d.qcow2"]
    # The last file goes with its directory (a data volume's, vol-<uuid>).
    await caller.ok(p.VOLUME_DELETE, {"installPath": str(files["d"]), "storagePath": str(storage)})
    assert not vol_dir.exists()


async def test_a_rebase_refuses_a_file_not_below_in_the_chain(
    caller: AgentCaller, storage: Path, vol_dir: Path
) -> None:
    a, b, c, d = await three_deep(caller, storage, vol_dir)
    stranger = make_qcow2(vol_dir / "stranger.qcow2")
    for target in (stranger, d, vol_dir / "missing.qcow2"):
        await refused(
            caller,
            p.VOLUME_REBASE,
            op(storage, c, backingFile=str(target)),
            "is not in the backing chain",
        )
    await refused(
        caller, p.VOLUME_REBASE, op(storage, c, backingFile="relative.qcow2"), "absolute path"
    )
    assert backing_of(c) == str(b)
    # Onto the file just below is "already there"; to the bottom skips one.
    await caller.ok(p.VOLUME_REBASE, op(storage, c, backingFile=str(b)))
    before = reads(d)
    await caller.ok(p.VOLUME_REBASE, op(storage, d, backingFile=str(a)))
    assert reads(d) == before and backing_of(d) == str(a)


# -- resize ------------------------------------------------------------------------------
async def test_resize_grows_never_shrinks(
    caller: AgentCaller, storage: Path, vol_dir: Path
) -> None:
    base = make_qcow2(vol_dir / "base.qcow2")
    write(base, 0, 0x33)
    top = vol_dir / "top.qcow2"
    await snapshot(caller, storage, base, top)
    answer = await caller.ok(p.VOLUME_RESIZE, op(storage, top, size=4 * MIB))
    assert answer["size"] == 4 * MIB
    assert (await caller.ok(p.VOLUME_RESIZE, op(storage, top, size=4 * MIB)))["size"] == 4 * MIB
    await refused(caller, p.VOLUME_RESIZE, op(storage, top, size=2 * MIB), "only grows")
    data = reads(top)
    assert len(data) == 4 * MIB and data[:CLUSTER] == b"\x33" * CLUSTER
    assert data[MIB:] == bytes(3 * MIB)
    check_clean(top)
    answer = await caller.call(p.VOLUME_RESIZE, op(storage, top, size=0))
    assert answer["success"] is False and "size" in answer["error"]


# -- export ------------------------------------------------------------------------------
async def test_an_export_is_a_standalone_copy_with_progress(
    connected: AgentCaller, storage: Path, vol_dir: Path, tmp_path: Path
) -> None:
    caller = connected
    files = await three_deep(caller, storage, vol_dir)
    top = files[-1]
    target = tmp_path / "backup" / "images" / "exported.qcow2"
    body = {"storagePath": str(storage), "installPath": str(top), "targetPath": str(target)}
    task_uuid = await caller.start_async(p.VOLUME_EXPORT, body)
    assert caller.core is not None
    answer = await caller.core.callback(task_uuid)
    assert answer["success"] is True, answer
    assert answer["installPath"] == str(target) and answer["format"] == "qcow2"
    assert answer["size"] == MIB
    assert answer["md5sum"] == hashlib.md5(target.read_bytes()).hexdigest()
    assert backing_of(target) == "" and reads(target) == reads(top)
    assert (target.stat().st_mode & 0o777) == 0o600
    assert leftovers(target.parent) == []
    core = caller.core
    await wait_until(lambda: any(b["progress"] == MIB for b in core.progress(task_uuid)))
    stages = core.progress(task_uuid)
    assert {b["stage"] for b in stages} == {"export"} and stages[0]["progress"] == 0
    assert all(b["total"] == MIB for b in stages)
    again = await caller.ok_async(p.VOLUME_EXPORT, body)  # a repeat: the same answer
    assert again == answer

    # A failed export leaves nothing: the source outside the storage is refused.
    outside = make_qcow2(tmp_path / "elsewhere.qcow2")
    failed = await caller.call_async(
        p.VOLUME_EXPORT, {**body, "installPath": str(outside), "targetPath": str(target) + "2"}
    )
    assert failed["success"] is False and "not under the primary storage" in failed["error"]
    assert sorted(os.listdir(target.parent)) == ["exported.qcow2"]


# -- what is refused ------------------------------------------------------------------------
async def test_files_outside_the_storage_and_hostile_backing_names_are_refused(
    caller: AgentCaller, storage: Path, vol_dir: Path, tmp_path: Path
) -> None:
    secret = host_secret(tmp_path / "host")
    secret_bytes = secret.read_bytes()
    outside = make_qcow2(tmp_path / "outside.qcow2")
    inside = make_qcow2(vol_dir / "inside.qcow2")
    # A file outside the storage, by its path or through a symlink (file or directory).
    (vol_dir / "link.qcow2").symlink_to(outside)
    (storage / "datavolumes" / "vol-escape").symlink_to(tmp_path)
    escaped = storage / "datavolumes" / "vol-escape" / "outside.qcow2"
    (vol_dir / "inner-link.qcow2").symlink_to(inside)
    # Overlays naming a host file, a json: spec, a symlink, and an unrecorded format.
    hostile = {
        "etc": ("-F", "raw", "-b", str(secret)),
        "passwd": ("-F", "raw", "-b", "/etc/passwd"),
        "json": (
            "-F",
            "raw",
            "-b",
            "json:"
            + json.dumps({"driver": "raw", "file": {"driver": "file", "filename": str(secret)}}),
        ),
        "symlinked": ("-F", "qcow2", "-b", str(vol_dir / "inner-link.qcow2")),
        "relative": ("-F", "qcow2", "-b", "inside.qcow2"),
    }
    for name, options in hostile.items():
        run(
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            *options,
            str(vol_dir / f"{name}.qcow2"),
            "1M",
        )
    unrecorded = vol_dir / "vmdk-backed.qcow2"
    run(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-u",
        "-F",
        "vmdk",
        "-b",
        str(inside),
        str(unrecorded),
        "1M",
    )
    cases = {
        outside: "not under the primary storage",
        vol_dir / "link.qcow2": "symlink",
        escaped: "not under the primary storage",
        vol_dir / "etc.qcow2": "not a regular file under the primary storage",
        vol_dir / "passwd.qcow2": "not a regular file under the primary storage",
        vol_dir / "json.qcow2": "not an absolute plain file path",
        vol_dir / "symlinked.qcow2": "not a regular file under the primary storage",
        vol_dir / "relative.qcow2": "not an absolute plain file path",
        unrecorded: "of format vmdk",
    }
    for path, reason in cases.items():
        new = str(vol_dir / "new.qcow2")
        for command, body in (
            (p.VOLUME_SNAPSHOT, op(storage, path, newInstallPath=new)),
            (p.VOLUME_REBASE, op(storage, path)),
            (p.VOLUME_RESIZE, op(storage, path, size=2 * MIB)),
            (p.VOLUME_CHAIN, {"storagePath": str(storage), "installPaths": [str(path)]}),
            (p.VOLUME_DELETE, op(storage, inside, keepIfBacking=[str(path)])),
        ):
            await refused(caller, command, body, reason)
        assert not Path(new).exists()
    # A data file is refused by the header check.
    data_file = vol_dir / "datafile.qcow2"
    run(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        f"data_file={vol_dir / 'd.bin'}",
        str(data_file),
        "1M",
    )
    await refused(
        caller,
        p.VOLUME_CHAIN,
        {"storagePath": str(storage), "installPaths": [str(data_file)]},
        "external data file",
    )
    # A snapshot's new file must be in the storage too.
    await refused(
        caller,
        p.VOLUME_SNAPSHOT,
        op(storage, inside, newInstallPath=str(tmp_path / "out.qcow2")),
        "not under the primary storage",
    )
    assert not (tmp_path / "out.qcow2").exists()
    assert secret.read_bytes() == secret_bytes
    # A missing file has an empty chain and is listed.
    missing = str(vol_dir / "missing.qcow2")
    answer = await caller.ok(
        p.VOLUME_CHAIN, {"storagePath": str(storage), "installPaths": [missing, str(inside)]}
    )
    assert answer["chains"] == {missing: [], str(inside): []} and answer["missing"] == [missing]


async def test_the_delete_guard_follows_headers_down_and_runs_no_qemu_img(
    caller: AgentCaller, storage: Path, vol_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, c, d = await three_deep(caller, storage, vol_dir)

    async def no_qemu_img(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"the delete guard ran qemu-img {args}")

    monkeypatch.setattr(images, "backing_chain", no_qemu_img)
    monkeypatch.setattr(images, "run_qemu_img", no_qemu_img)
    # a is held two (and three) levels down: by c and d, though b is not kept.
    error = await refused(caller, p.VOLUME_DELETE, op(storage, a, keepIfBacking=[str(d)]), str(d))
    assert "stands on it" in error
    error = await refused(
        caller, p.VOLUME_DELETE, op(storage, a, keepIfBacking=[str(c), str(d)]), " on it"
    )
    assert f"{c}, {d} stand on it" in error
    assert await volume_chain.holders(str(b), [str(a), str(c), str(d)], str(storage)) == [
        str(c),
        str(d),
    ]
    assert await volume_chain.holders(str(d), [str(a), str(b), str(c)], str(storage)) == []
    assert a.exists()
    # A kept file whose chain loops is refused, not followed for ever.
    loop, other = make_qcow2(vol_dir / "loop.qcow2"), vol_dir / "other.qcow2"
    make_qcow2(other, backing=loop)
    run("qemu-img", "rebase", "-q", "-u", "-F", "qcow2", "-b", str(other), str(loop))
    await refused(caller, p.VOLUME_DELETE, op(storage, a, keepIfBacking=[str(loop)]), "loops")
    assert a.exists()


async def test_a_root_volume_may_stand_on_snapshots_on_its_image_and_nothing_hostile(
    storage: Path, tmp_path: Path
) -> None:
    """What VM_START checks before QEMU opens a root volume (volume_chain.check_root_volume):
    the chain a root volume's snapshots make (active file on snapshot files on the image
    cache) passes; a chain naming anything else is refused."""
    image = make_qcow2(storage / "imagecache" / "img.qcow2")

    def vm_dir() -> Path:
        return storage / "rootvolumes" / f"vm-{uuid.uuid4().hex}"

    def overlay(path: Path, backing: str, fmt: str = "qcow2") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        run(
            "qemu-img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-u",
            "-F",
            fmt,
            "-b",
            backing,
            str(path),
            "1M",
        )
        return path

    files = [make_qcow2(vm_dir() / "root.qcow2", backing=image)]
    for k in range(3):  # three snapshots of the root volume: 4 files on the image
        files.append(make_qcow2(files[0].parent / f"s{k}.qcow2", backing=files[-1]))
    await volume_chain.check_root_volume(str(files[-1]), "qcow2")
    blank = make_qcow2(vm_dir() / "blank.qcow2")
    await volume_chain.check_root_volume(str(blank), "qcow2")

    secret = host_secret(tmp_path / "host")
    raw_secret = storage / "imagecache" / "secret.raw"
    raw_secret.write_bytes(secret.read_bytes())
    chained_image = make_qcow2(storage / "imagecache" / "chained.qcow2", backing=image)
    data = make_qcow2(storage / "datavolumes" / "vol-1" / "d.qcow2")
    (files[0].parent / "link.qcow2").symlink_to(files[1])
    data_file = vm_dir() / "datafile.qcow2"
    data_file.parent.mkdir(parents=True)
    run(
        *("qemu-img", "create", "-q", "-f", "qcow2"),
        *("-o", f"data_file={tmp_path / 'd.bin'}", str(data_file), "1M"),
    )

    def on(backing: str | Path, fmt: str = "qcow2") -> Path:
        """A snapshot of a new root volume on ``backing``: root -> snap -> backing."""
        directory = vm_dir()
        snap = overlay(directory / "snap.qcow2", str(backing), fmt)
        return overlay(directory / "root.qcow2", str(snap))

    refusals = {
        on(secret, "raw"): "not a regular file under the primary storage",
        on("json:{}", "raw"): "not an absolute plain file path",
        on(files[0].parent / "link.qcow2"): "not a regular file under the primary storage",
        on(data): "neither in the volume's directory nor an image",
        on(files[1]): "neither in the volume's directory nor an image",  # another VM's
        on(chained_image): "has a backing file",
        on(raw_secret, "raw"): "not a disk image",
        on(image, "raw"): "not a disk image",  # a qcow2 image recorded as raw
        data_file: "external data file",
    }
    for path, reason in refusals.items():
        with pytest.raises(AgentError, match=re.escape(reason)):
            await volume_chain.check_root_volume(str(path), "qcow2")
    with pytest.raises(AgentError, match="is a qcow2 file, not raw"):
        await volume_chain.check_root_volume(str(files[-1]), "raw")
    # Not in a primary storage's rootvolumes/vm-<uuid>/: the strict rule of images, an
    # overlay on a standalone image only.
    elsewhere = make_qcow2(tmp_path / "vol" / "root.qcow2", backing=files[0])
    with pytest.raises(AgentError, match="with a backing file"):
        await volume_chain.check_root_volume(str(elsewhere), "qcow2")
    await volume_chain.check_root_volume(
        str(make_qcow2(tmp_path / "vol" / "ok.qcow2", backing=image)), "qcow2"
    )


# -- the simulator: data volumes of (fake) VMs ------------------------------------------------
async def test_a_simulated_vm_takes_data_volumes_and_guards_them(
    connected: AgentCaller, storage: Path, vol_dir: Path, tmp_path: Path
) -> None:
    root = make_qcow2(storage / "rootvolumes" / f"vm-{'e' * 32}" / "root.qcow2")
    data = make_qcow2(vol_dir / "data.qcow2")
    volume = {"uuid": vol_dir.name[4:], "installPath": str(data), "deviceId": 1}
    vm = "e" * 32
    await connected.ok_async(p.VM_START, start_body(vm, root))
    await connected.ok(p.VM_ATTACH_VOLUME, {"vmUuid": vm, "volume": volume})
    await connected.ok(p.VM_ATTACH_VOLUME, {"vmUuid": vm, "volume": volume})  # a repeat
    other = {**volume, "installPath": str(make_qcow2(vol_dir / "other.qcow2"))}
    answer = await connected.call(p.VM_ATTACH_VOLUME, {"vmUuid": vm, "volume": other})
    assert answer["success"] is False and "at vdb" in answer["error"]
    bad = await connected.call(
        p.VM_ATTACH_VOLUME, {"vmUuid": vm, "volume": {**volume, "deviceId": 0}}
    )
    assert bad["success"] is False and "deviceId" in bad["error"]
    # A running VM's disk is neither deleted nor rebased offline.
    delete = {"installPath": str(data), "storagePath": str(storage), "keepIfBacking": []}
    await refused(connected, p.VOLUME_DELETE, delete, f"running VM {vm} writes it (disk vdb)")
    await refused(connected, p.VOLUME_RESIZE, op(storage, data, size=2 * MIB), "running VM")
    await connected.ok(p.VM_DETACH_VOLUME, {"vmUuid": vm, "volume": volume, "timeout": 1})
    await connected.ok(p.VM_DETACH_VOLUME, {"vmUuid": vm, "volume": volume, "timeout": 1})
    await connected.ok(p.VOLUME_RESIZE, op(storage, data, size=2 * MIB))
    # VM_START takes the data volumes (a stopped VM's attach: nothing to do).
    await connected.ok_async(p.VM_STOP, {"vmUuid": vm, "type": "force"})
    await connected.ok(p.VM_ATTACH_VOLUME, {"vmUuid": vm, "volume": volume})
    await connected.ok_async(p.VM_START, start_body(vm, root, dataVolumes=[volume]))
    await refused(connected, p.VOLUME_DELETE, delete, "running VM")
    await connected.ok_async(p.VM_DESTROY, {"vmUuid": vm})
    await connected.ok(p.VOLUME_DELETE, {"installPath": other["installPath"]})
    await connected.ok(p.VOLUME_DELETE, delete)
    assert not vol_dir.exists()


async def test_a_cancelled_export_leaves_nothing_and_never_answers(
    connected: AgentCaller, storage: Path, vol_dir: Path, tmp_path: Path
) -> None:
    big = make_qcow2(vol_dir / "big.qcow2", 256 * MIB)
    write(big, 0, 0x55, 256 * MIB)  # data, not zeros: the copy takes a while
    target = tmp_path / "bs" / "big.qcow2"
    body = {"storagePath": str(storage), "installPath": str(big), "targetPath": str(target)}
    task = await connected.start_async(p.VOLUME_EXPORT, body)
    await wait_until(lambda: target.parent.is_dir() and leftovers(target.parent) != [], 10)
    answer = await connected.ok("/task/cancel", {"taskUuid": task})
    assert answer["cancelled"] is True
    assert os.listdir(target.parent) == []
    assert connected.core is not None and task not in connected.core.callbacks


async def test_a_raw_file_is_not_read_as_the_qcow2_its_guest_wrote(
    caller: AgentCaller, storage: Path, vol_dir: Path, tmp_path: Path
) -> None:
    # A guest owns every byte of a raw disk: it may write a qcow2 header naming another
    # volume.  Recorded raw (the overlay's backing format), it stays raw: QEMU reads it so.
    victim = make_qcow2(storage / "datavolumes" / "vol-victim" / "victim.qcow2")
    forged = make_qcow2(tmp_path / "forged.qcow2", backing=victim)
    guest_raw = vol_dir / "guest.raw"
    guest_raw.write_bytes(forged.read_bytes().ljust(MIB, b"\0"))
    overlay = vol_dir / "overlay.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", str(guest_raw), str(overlay))
    answer = await caller.ok(
        p.VOLUME_CHAIN, {"storagePath": str(storage), "installPaths": [str(overlay)]}
    )
    assert answer["chains"] == {str(overlay): [str(guest_raw)]}
    target = tmp_path / "bs" / "out.qcow2"
    body = {"storagePath": str(storage), "installPath": str(overlay), "targetPath": str(target)}
    assert caller.core is not None
    await caller.ok_async(p.VOLUME_EXPORT, body)
    assert reads(target) == guest_raw.read_bytes()  # the raw bytes, not the victim's
