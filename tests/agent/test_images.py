"""Images and volumes: downloads (checked, atomic, nothing left on failure), overlays, info."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import os
import re
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent import image_header, images
from agent.app import Agent
from agent.simulator_backend import SimulatorBackend
from agentkit.errors import AgentError, ArgumentError
from tests.agent.crafted_images import CASES, SECRET, craft, host_secret
from tests.agent.helpers import AgentCaller, CoreStub, wait_until

MIB = 1024 * 1024


def raw_disk(size: int) -> bytes:
    """A raw disk image: an MBR boot signature and some non-zero content."""
    data = bytearray(os.urandom(size))
    data[510:512] = b"\x55\xaa"
    return bytes(data)


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, bytes]:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "64M")
    child = tmp_path / "child.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(child))
    return {
        "disk.raw": raw_disk(3 * MIB + 4096),
        "base.qcow2": base.read_bytes(),
        "child.qcow2": child.read_bytes(),
        "page.html": b"<html><body>Sorry, not found</body></html>\n" * 100,
    }


HUGE = 2**50
"""A Content-Length no file system here has free (1 PiB)."""


@pytest.fixture
async def web_server(files: dict[str, bytes]) -> AsyncIterator[str]:
    """A local HTTP server with the test files, a 404 and a 500; ``stall`` sends its headers
    then nothing, ``stall-late`` 1 MiB then nothing, ``huge`` declares HUGE bytes then
    stalls: until the test ends."""
    release = asyncio.Event()

    async def serve(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name == "broken":
            return web.Response(status=500, text="oops")
        if name in ("stall", "stall-late", "huge"):
            response = web.StreamResponse()
            response.content_length = HUGE if name == "huge" else 4 * MIB
            await response.prepare(request)
            if name == "stall-late":
                await response.write(raw_disk(MIB))
            await release.wait()
            return response
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        release.set()
        await runner.cleanup()


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


# -- through the agent: progress reports and the answer -------------------------------
async def test_download_through_the_agent_reports_progress(
    connected: AgentCaller, core: CoreStub, web_server: str, files: dict[str, bytes], tmp_path: Path
) -> None:
    target = tmp_path / "cache" / "img.raw"
    data = files["disk.raw"]
    checksum = "sha256:" + hashlib.sha256(data).hexdigest()
    body = {
        "url": f"{web_server}/disk.raw",
        "installPath": str(target),
        "checksum": checksum,
        "taskUuid": "task-dl",
    }
    answer = await connected.ok_async("/image/download", body)
    assert answer == {
        "success": True,
        "error": "",
        "installPath": str(target),
        "format": "raw",
        "size": len(data),
        "actualSize": answer["actualSize"],
        "md5sum": hashlib.md5(data).hexdigest(),
    }
    assert target.read_bytes() == data
    assert leftovers(target.parent) == ["img.raw"]
    await wait_until(
        lambda: any(r["progress"] == len(data) for r in core.progress("task-dl")), 5, "progress"
    )
    progress = core.progress("task-dl")
    assert progress[0]["progress"] == 0
    assert progress[-1] == {
        "taskUuid": "task-dl",
        "stage": "download",
        "progress": len(data),
        "total": len(data),
    }
    assert len(progress) >= 4  # 0, each MiB, the end
    assert all(a["progress"] <= b["progress"] for a, b in itertools.pairwise(progress))


async def test_failed_download_through_the_agent_leaves_nothing(
    connected: AgentCaller, web_server: str, tmp_path: Path
) -> None:
    target = tmp_path / "cache" / "x.qcow2"
    answer = await connected.call_async(
        "/image/download", {"url": f"{web_server}/nothing", "installPath": str(target)}
    )
    assert answer["success"] is False
    assert "HTTP 404" in answer["error"]
    assert leftovers(target.parent) == []


# -- the download function ---------------------------------------------------------
async def test_qcow2_download_with_md5(
    web_server: str, files: dict[str, bytes], tmp_path: Path
) -> None:
    target = tmp_path / "c" / "base.qcow2"
    md5 = hashlib.md5(files["base.qcow2"]).hexdigest()
    result = await images.download(f"{web_server}/base.qcow2", str(target), f"md5:{md5.upper()}")
    assert (result.format, result.size, result.md5sum) == ("qcow2", 64 * MIB, md5)
    assert oct(target.stat().st_mode & 0o777) == "0o600"


@pytest.mark.parametrize(
    ("name", "checksum", "message"),
    [
        ("disk.raw", "sha256:" + "0" * 64, "checksum mismatch for"),
        ("nothing", "", "answered HTTP 404"),
        ("broken", "", "answered HTTP 500"),
        ("page.html", "", "is not a disk image"),
        ("child.qcow2", "", "with a backing file"),
    ],
)
async def test_failed_downloads_leave_no_file(
    web_server: str, tmp_path: Path, name: str, checksum: str, message: str
) -> None:
    target = tmp_path / "cache" / "img"
    with pytest.raises(AgentError, match=message) as info:
        await images.download(f"{web_server}/{name}", str(target), checksum)
    assert leftovers(target.parent) == []
    if checksum:  # both sums are named
        assert checksum in str(info.value)
        assert "got sha256:" in str(info.value)


async def test_unreachable_url(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match=r"cannot reach http://127\.0\.0\.1:9/"):
        await images.download("http://127.0.0.1:9/x.qcow2", str(tmp_path / "c" / "x"))
    assert leftovers(tmp_path / "c") == []


async def test_local_copy_by_path_and_file_url(files: dict[str, bytes], tmp_path: Path) -> None:
    source = tmp_path / "src.raw"
    source.write_bytes(files["disk.raw"])
    seen: list[tuple[int, int]] = []
    result = await images.download(
        str(source), str(tmp_path / "a.raw"), "", lambda d, t: seen.append((d, t))
    )
    assert result.format == "raw"
    assert (tmp_path / "a.raw").read_bytes() == files["disk.raw"]
    assert seen[0] == (0, len(files["disk.raw"]))
    assert seen[-1] == (len(files["disk.raw"]),) * 2
    result = await images.download(f"file://{source}", str(tmp_path / "b.raw"))
    assert result.md5sum == hashlib.md5(files["disk.raw"]).hexdigest()


async def test_download_refusals(tmp_path: Path) -> None:
    existing = tmp_path / "exists"
    existing.write_text("keep me")
    with pytest.raises(AgentError, match="does not exist"):
        await images.download(str(tmp_path / "missing"), str(tmp_path / "t"))
    with pytest.raises(AgentError, match="already exists"):
        await images.download(str(existing), str(existing))
    assert existing.read_text() == "keep me"
    with pytest.raises(ArgumentError, match="neither an http"):
        await images.download("ftp://example.invalid/x", str(tmp_path / "t"))
    with pytest.raises(ArgumentError, match="must be absolute"):
        await images.download(str(existing), "relative/path")
    with pytest.raises(ArgumentError, match="sha256"):
        await images.download(str(existing), str(tmp_path / "t"), "crc32:1234")
    assert leftovers(tmp_path) == ["exists"]


def test_parse_checksum() -> None:
    assert images.parse_checksum("") == ("", "")
    assert images.parse_checksum("SHA256:" + "A" * 64) == ("sha256", "a" * 64)
    assert images.parse_checksum("md5:" + "0" * 32) == ("md5", "0" * 32)
    for bad in ("md5:123", "sha256", "sha1:" + "0" * 40):
        with pytest.raises(ArgumentError):
            images.parse_checksum(bad)


# -- volumes, info, deletion ---------------------------------------------------------
async def test_overlay_volume_on_a_cached_image(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "32M")
    path = tmp_path / "vols" / "root.qcow2"
    volume = await images.create_volume(str(path), str(base), 0)
    assert volume.size == 32 * MIB
    info = await images.info(str(path))
    assert (info.format, info.backing_file) == ("qcow2", str(base))
    bigger = await images.create_volume(str(tmp_path / "big.qcow2"), str(base), 64 * MIB)
    assert bigger.size == 64 * MIB
    # A repeat (its answer was lost) is answered as made; another volume there is refused.
    again = await images.create_volume(str(path), str(base), 0)
    assert (again.install_path, again.size) == (str(path), 32 * MIB)
    with pytest.raises(AgentError, match="already exists with 33554432 bytes, not 67108864"):
        await images.create_volume(str(path), str(base), 64 * MIB)
    with pytest.raises(AgentError, match="already exists, a qcow2 with backing file"):
        await images.create_volume(str(path), "", 32 * MIB)
    with pytest.raises(ArgumentError, match="smaller"):
        await images.create_volume(str(tmp_path / "small.qcow2"), str(base), MIB)
    with pytest.raises(AgentError, match="does not exist"):
        await images.create_volume(str(tmp_path / "o.qcow2"), str(tmp_path / "nope"), 0)
    assert not (tmp_path / "o.qcow2").exists() and not (tmp_path / "small.qcow2").exists()


async def test_later_overlays_are_the_files_qemu_img_would_make(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "32M")
    first = await images.create_volume(str(tmp_path / "a.qcow2"), str(base), 0)
    second = await images.create_volume(str(tmp_path / "b.qcow2"), str(base), 0)
    assert (second.size, second.actual_size) == (first.size, first.actual_size)
    made = tmp_path / "by-qemu-img.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(made))
    assert (tmp_path / "b.qcow2").read_bytes() == made.read_bytes()
    qemu_img("check", "-q", str(tmp_path / "b.qcow2"))
    info = await images.info(str(tmp_path / "b.qcow2"))
    assert (info.size, info.backing_file) == (32 * MIB, str(base))
    other = tmp_path / "other.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(other), "32M")
    with pytest.raises(AgentError, match="already exists, a qcow2 with backing file"):
        await images.create_volume(str(tmp_path / "b.qcow2"), str(other), 0)
    # A new file at the backing path (another image) is not mistaken for the old one.
    base.unlink()
    qemu_img("create", "-q", "-f", "qcow2", str(base), "48M")
    third = await images.create_volume(str(tmp_path / "c.qcow2"), str(base), 0)
    assert third.size == 48 * MIB


async def test_blank_volume_and_raw_backing(tmp_path: Path) -> None:
    blank = await images.create_volume(str(tmp_path / "blank.qcow2"), "", 16 * MIB)
    assert blank.size == 16 * MIB
    with pytest.raises(ArgumentError, match="needs a size"):
        await images.create_volume(str(tmp_path / "none.qcow2"), "", 0)
    raw = tmp_path / "base.raw"
    raw.write_bytes(raw_disk(MIB))
    await images.create_volume(str(tmp_path / "over.qcow2"), str(raw), 0)
    info = await images.info(str(tmp_path / "over.qcow2"))
    assert info.backing_file == str(raw)
    with pytest.raises(ArgumentError, match="only qcow2"):
        await images.create_volume(str(tmp_path / "v.raw"), "", MIB, "raw")


async def test_volume_commands_through_the_agent(connected: AgentCaller, tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    path = tmp_path / "v.qcow2"
    created = await connected.ok(
        "/volume/create", {"installPath": str(path), "backingFile": str(base), "size": 0}
    )
    assert created["installPath"] == str(path) and created["size"] == 8 * MIB
    info = await connected.ok("/image/info", {"installPath": str(path)})
    assert (info["format"], info["size"]) == ("qcow2", 8 * MIB)
    await connected.ok("/volume/delete", {"installPath": str(path)})
    assert not path.exists()
    await connected.ok("/volume/delete", {"installPath": str(path)})  # missing is fine
    await connected.ok("/file/delete", {"path": str(base)})
    assert not base.exists()
    answer = await connected.call("/file/delete", {"path": str(tmp_path)})
    assert answer["success"] is False and "directory" in answer["error"]
    answer = await connected.call("/image/info", {"installPath": str(base)})
    assert answer["success"] is False and "does not exist" in answer["error"]


async def test_qemu_img_version() -> None:
    version = await images.qemu_img_version()
    assert version[0].isdigit() and version.count(".") >= 1


# -- images that name host files: refused before qemu-img opens them ---------------------------
@pytest.fixture
def secret(tmp_path: Path) -> Path:
    return host_secret(tmp_path / "host")


@pytest.mark.parametrize("case", list(CASES))
async def test_images_naming_host_files_are_refused(
    case: str, secret: Path, tmp_path: Path
) -> None:
    image = craft(case, tmp_path / "crafted", secret)
    target = tmp_path / "bs" / "image"
    with pytest.raises(AgentError, match=image.reason) as refused:
        await images.download(str(image.path), str(target))
    assert str(image.path) in str(refused.value)  # the file is named
    assert leftovers(target.parent) == []
    # Nor can a volume be made on it, even if it got into a storage some other way.
    with pytest.raises(AgentError, match=image.reason):
        await images.create_volume(str(tmp_path / "vol.qcow2"), str(image.path), 0)
    assert not (tmp_path / "vol.qcow2").exists()
    assert secret.read_bytes() == SECRET


async def test_host_file_images_are_refused_through_the_agent_over_http(
    connected: AgentCaller, secret: Path, tmp_path: Path
) -> None:
    served = {
        case.replace(" ", "-").replace(":", ""): craft(case, tmp_path / "crafted", secret)
        for case in CASES
    }

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=served[request.match_info["name"]].path.read_bytes())

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        for name, image in served.items():
            target = tmp_path / "bs" / f"{name}.img"
            answer = await connected.call_async(
                "/image/download", {"url": f"{base}/{name}", "installPath": str(target)}
            )
            assert answer["success"] is False, name
            assert re.search(image.reason, answer["error"]), (name, answer["error"])
            assert f"{base}/{name}" in answer["error"]
            assert leftovers(target.parent) == []
    finally:
        await runner.cleanup()


async def test_a_raw_disk_with_a_qcow2_inside_stays_raw(secret: Path, tmp_path: Path) -> None:
    """The header is read where QEMU reads it: a qcow2 deeper in a raw disk is guest data."""
    crafted = craft("backing file", tmp_path / "crafted", secret)
    disk = bytearray(raw_disk(2 * MIB))
    inner = crafted.path.read_bytes()
    disk[MIB : MIB + len(inner)] = inner
    source = tmp_path / "disk.raw"
    source.write_bytes(bytes(disk))
    cached = tmp_path / "cache" / "disk.raw"
    result = await images.download(str(source), str(cached))
    assert (result.format, result.size) == ("raw", 2 * MIB)
    overlay = tmp_path / "vol" / "root.qcow2"
    await images.create_volume(str(overlay), str(cached), 0)
    header = image_header.inspect(str(overlay), "overlay", allow_backing=True)
    assert (header.backing_file, header.backing_format) == (str(cached), "raw")
    await images.check_root_volume(str(overlay), "qcow2")


async def test_a_root_volume_chain_must_be_what_the_project_makes(
    secret: Path, tmp_path: Path
) -> None:
    base = tmp_path / "cache" / "base.qcow2"
    base.parent.mkdir()
    qemu_img("create", "-q", "-f", "qcow2", str(base), "8M")
    good = tmp_path / "vol" / "good.qcow2"
    await images.create_volume(str(good), str(base), 0)
    await images.check_root_volume(str(good), "qcow2")
    await images.check_root_volume(str(base), "qcow2")  # a blank volume

    chained = craft("backing file", tmp_path / "crafted", secret).path
    data_file = craft("external data file", tmp_path / "crafted", secret).path

    def overlay(name: str, backing: str, fmt: str) -> str:
        path = tmp_path / "vol" / name
        qemu_img("create", "-q", "-f", "qcow2", "-u", "-F", fmt, "-b", backing, str(path), "8M")
        return str(path)

    refusals = {
        overlay("on-secret.qcow2", str(secret), "raw"): "not a disk image",
        overlay("on-json.qcow2", "json:{}", "raw"): "not an absolute file path",
        overlay("on-chain.qcow2", str(chained), "qcow2"): ("with a backing file"),
        overlay("on-missing.qcow2", str(tmp_path / "nope"), "qcow2"): "does not exist",
        overlay("on-wrong-format.qcow2", str(base), "raw"): "recorded as raw; it is qcow2",
        str(data_file): "external data file",
    }
    for path, reason in refusals.items():
        with pytest.raises(AgentError, match=reason):
            await images.check_root_volume(path, "qcow2")
    with pytest.raises(AgentError, match="is a qcow2 file, not raw"):
        await images.check_root_volume(str(good), "raw")


# -- modes: disks are root's (and QEMU's, through libvirt) -------------------------------------
async def test_disks_and_their_directories_are_not_for_other_users(
    files: dict[str, bytes], tmp_path: Path
) -> None:
    source = tmp_path / "src.qcow2"
    source.write_bytes(files["base.qcow2"])
    cached = tmp_path / "ps" / "imagecache" / "img.qcow2"
    await images.download(str(source), str(cached))
    first = tmp_path / "ps" / "rootvolumes" / "vm-1" / "root.qcow2"
    second = tmp_path / "ps" / "rootvolumes" / "vm-2" / "root.qcow2"
    await images.create_volume(str(first), str(cached), 0)  # by qemu-img
    await images.create_volume(str(second), str(cached), 0)  # from the template
    blank = tmp_path / "ps" / "blank.qcow2"
    await images.create_volume(str(blank), "", MIB)
    for path in (cached, first, second, blank):
        assert oct(path.stat().st_mode & 0o777) == "0o600", path
    for directory in (cached.parent, first.parent, first.parent.parent, second.parent):
        assert oct(directory.stat().st_mode & 0o777) == "0o711", directory


# -- bounds: free space, stalls, cancellation ----------------------------------------------------
async def test_a_download_larger_than_the_free_space_is_refused_before_writing(
    web_server: str, tmp_path: Path
) -> None:
    target = tmp_path / "bs" / "huge.img"
    with pytest.raises(AgentError, match=rf"is {HUGE} bytes .*, more than the \d+ bytes") as info:
        await images.download(f"{web_server}/huge", str(target))
    assert f"free on {target.parent}" in str(info.value)
    assert leftovers(target.parent) == []

    stat = os.statvfs(tmp_path)
    sparse = tmp_path / "sparse.raw"  # takes no space, declares more than there is
    with sparse.open("wb") as f:
        f.truncate(stat.f_bavail * stat.f_frsize + 1024**3)
    with pytest.raises(AgentError, match=r"more than the .* free on"):
        await images.download(str(sparse), str(target))
    assert leftovers(target.parent) == []


@pytest.mark.parametrize("name", ["stall", "stall-late"])
async def test_a_stalled_download_fails_after_the_stall_timeout(
    web_server: str, tmp_path: Path, name: str
) -> None:
    target = tmp_path / "bs" / "img"
    with pytest.raises(AgentError, match=r"stalled: nothing received for 0\.5s"):
        await images.download(f"{web_server}/{name}", str(target), stall_timeout=0.5)
    assert leftovers(target.parent) == []
    with pytest.raises(ArgumentError, match="stall timeout must be positive"):
        await images.download(f"{web_server}/{name}", str(target), stall_timeout=0)


async def test_the_stall_timeout_reaches_the_download_through_the_agent(
    connected: AgentCaller, web_server: str, tmp_path: Path
) -> None:
    target = tmp_path / "bs" / "img"
    body = {"url": f"{web_server}/stall-late", "installPath": str(target), "stallTimeout": 0.5}
    answer = await connected.call_async("/image/download", body)
    assert answer["success"] is False and "stalled" in answer["error"], answer
    assert leftovers(target.parent) == []
    answer = await connected.call_async("/image/download", body | {"stallTimeout": 0})
    assert answer["error"] == "field 'stallTimeout' must be a number > 0"


async def part_files(directory: Path) -> None:
    await wait_until(
        lambda: any(n.endswith(".part") for n in leftovers(directory)), 10, "a .part file"
    )


async def test_a_cancelled_download_leaves_nothing_and_never_answers(
    connected: AgentCaller, core: CoreStub, web_server: str, tmp_path: Path
) -> None:
    target = tmp_path / "bs" / "img"
    body = {"url": f"{web_server}/stall-late", "installPath": str(target)}
    task = await connected.start_async("/image/download", body)
    await part_files(target.parent)
    answer = await connected.ok("/task/cancel", {"taskUuid": task})
    assert answer["cancelled"] is True and answer["taskUuid"] == task
    assert leftovers(target.parent) == []
    assert task not in core.callbacks
    again = await connected.ok("/task/cancel", {"taskUuid": task})
    assert again["cancelled"] is False
    refused = await connected.call("/task/cancel", {})
    assert refused["success"] is False and "taskUuid" in refused["error"]


async def test_a_cancelled_local_copy_stops_its_thread_and_leaves_nothing(tmp_path: Path) -> None:
    source = tmp_path / "big.raw"
    with source.open("wb") as f:
        f.truncate(64 * 1024**3)  # sparse: reads as zeros, far longer than the test
    target = tmp_path / "bs" / "big.raw"
    copying = asyncio.create_task(images.download(str(source), str(target)))
    await part_files(target.parent)
    copying.cancel()
    with pytest.raises(asyncio.CancelledError):
        await copying
    assert leftovers(target.parent) == []  # the thread ended before the file was removed
    await asyncio.sleep(0.2)
    assert leftovers(target.parent) == []


async def test_the_agent_stops_without_waiting_for_a_stalled_download(
    core: CoreStub, web_server: str, tmp_path: Path
) -> None:
    agent = Agent(SimulatorBackend(), tmp_path / "agent")
    await agent.start("127.0.0.1", 0)
    caller = AgentCaller(f"http://127.0.0.1:{agent.port}", agent.token, core)
    target = tmp_path / "bs" / "img"
    try:
        body = {"url": f"{web_server}/stall-late", "installPath": str(target)}
        await caller.start_async("/image/download", body)
        await part_files(target.parent)
    finally:
        await caller.close()
        await asyncio.wait_for(agent.stop(), 30)  # a guard against a hang, not a timing
    assert leftovers(target.parent) == []


# -- repeats after an agent died around a command -------------------------------------------
async def test_a_repeated_download_is_answered_from_the_finished_file(
    files: dict[str, bytes], tmp_path: Path
) -> None:
    source = tmp_path / "disk.raw"
    source.write_bytes(files["disk.raw"])
    target = tmp_path / "cache" / "img.raw"
    digest = "sha256:" + hashlib.sha256(files["disk.raw"]).hexdigest()
    first = await images.download(str(source), str(target), digest)
    again = await images.download(str(source), str(target), digest)
    assert again == first
    with pytest.raises(AgentError, match="already exists and its sha256 is not the one"):
        await images.download(str(source), str(target), "sha256:" + "0" * 64)
    assert leftovers(target.parent) == ["img.raw"]


async def test_what_a_dead_agent_left_half_made_is_replaced_and_deleted(
    files: dict[str, bytes], tmp_path: Path
) -> None:
    """A download or volume cut short by the agent's death leaves only its in-progress file
    (never a file at the target); the repeat overwrites it, a delete of the target removes it."""
    source = tmp_path / "disk.raw"
    source.write_bytes(files["disk.raw"])
    cache = tmp_path / "cache"
    cache.mkdir()
    target = cache / "img.raw"
    part, creating = cache / ".img.raw.part", cache / ".vol.qcow2.creating"
    part.write_bytes(files["disk.raw"][:1000])  # as a killed download leaves it
    await images.delete_file(str(target))
    assert leftovers(cache) == []
    part.write_bytes(files["disk.raw"][:1000])
    await images.download(str(source), str(target))
    assert leftovers(cache) == ["img.raw"]
    assert target.read_bytes() == files["disk.raw"]

    creating.write_bytes(b"QFI\xfb half a header")
    volume = await images.create_volume(str(cache / "vol.qcow2"), str(target), 0)
    assert volume.size == len(files["disk.raw"])
    assert leftovers(cache) == ["img.raw", "vol.qcow2"]
    creating.write_bytes(b"QFI\xfb half a header")
    await images.delete_file(str(cache / "vol.qcow2"))
    assert leftovers(cache) == ["img.raw"]
