"""Images and volumes: downloads (checked, atomic, nothing left on failure), overlays, info."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from agent import images
from agent.errors import AgentError, ArgumentError
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


@pytest.fixture
async def web_server(files: dict[str, bytes]) -> AsyncIterator[str]:
    """A local HTTP server with the test files, a 404 and a 500."""

    async def serve(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "broken":
            return web.Response(status=500, text="oops")
        if name not in files:
            raise web.HTTPNotFound()
        return web.Response(body=files[name], content_type="application/octet-stream")

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
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
    assert oct(target.stat().st_mode & 0o777) == "0o644"


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
    with pytest.raises(AgentError, match="already exists"):
        await images.create_volume(str(path), str(base), 0)
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
    with pytest.raises(AgentError, match="already exists"):
        await images.create_volume(str(tmp_path / "b.qcow2"), str(base), 0)
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
