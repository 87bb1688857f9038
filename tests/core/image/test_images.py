"""Images on a simulator lab: the agent really copies, downloads, checks and deletes files."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import func, select

from core.host.local_agent import free_port
from core.image.api import AddImage
from core.image.models import ImageBackupStorageRefVO, ImageVO
from core.image.plugin import PROGRESS_EVENT, ImagePlugin, ready_image
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.events import CanonicalEvent
from core.kernel.node import ManagementNode
from core.tag.models import SystemTagVO, UserTagVO
from tests.agent.crafted_images import CASES, SECRET, craft, host_secret
from tests.conftest import fails, ok

MiB = 1024**2


# -- the lab and the files ------------------------------------------------------------------


@dataclass
class Lab:
    zone_uuid: str
    bs: dict[str, Any]
    bs_dir: Path


async def lab(node: ManagementNode, tmp_path: Path) -> Lab:
    zone = await ok(node, "CreateZone", name="z")
    cluster = await ok(
        node, "CreateCluster", name="c", zoneUuid=zone["uuid"], hypervisorType="Simulator"
    )
    await ok(node, "AddSimulatorHost", name="sim", clusterUuid=cluster["uuid"])
    bs_dir = tmp_path / "bs"
    bs = await ok(node, "AddLocalBackupStorage", name="bs", zoneUuid=zone["uuid"], url=str(bs_dir))
    return Lab(zone["uuid"], bs, bs_dir)


def qcow2(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def raw_disk(size: int = 3 * MiB) -> bytes:
    """A raw disk: an MBR boot signature at 510, then zeros."""
    data = bytearray(size)
    data[510:512] = b"\x55\xaa"
    return bytes(data)


def sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


async def add_fails(node: ManagementNode, **params: Any) -> ErrorCode:
    """Call AddImage and insist it fails; the error."""
    reply = await node.call("AddImage", params)
    assert not reply.success, f"AddImage unexpectedly succeeded: {reply.to_dict()}"
    assert reply.error is not None
    assert "could not remove" not in str(reply.error)  # every copy was cleaned up
    return reply.error


async def assert_nothing_left(node: ManagementNode, *directories: Path) -> None:
    """No image record, no copy record, no tag, and no file (temporary ones too)."""
    assert await ok(node, "QueryImage") == []

    def count(session: Any) -> list[int]:
        rows = [select(func.count()).select_from(m) for m in (ImageVO, ImageBackupStorageRefVO)]
        rows += [
            select(func.count()).select_from(m).where(m.resource_type == "ImageVO")
            for m in (SystemTagVO, UserTagVO)
        ]
        return [int(session.scalar(stmt) or 0) for stmt in rows]

    assert await node.db.run(count) == [0, 0, 0, 0]
    for directory in directories:
        assert sorted(os.listdir(directory)) == [], directory


def progress_events(node: ManagementNode) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def record(event: CanonicalEvent) -> None:
        seen.append(event.data)

    node.events.subscribe(PROGRESS_EVENT, record)
    return seen


async def until(check: Callable[[], bool], timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "timed out"
        await asyncio.sleep(0.02)


# -- an HTTP server for downloads ---------------------------------------------------------------


@dataclass
class Files:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    gate: asyncio.Event | None = None
    """When set up, a download sends its first ``first`` bytes, then waits for the gate."""
    first: int = MiB
    declared: dict[str, int] = field(default_factory=dict)
    """Content-Lengths that are not the file's."""


@pytest.fixture
async def http() -> AsyncIterator[Files]:
    served = Files()

    async def serve(request: web.Request) -> web.StreamResponse:
        data = served.files.get(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        response = web.StreamResponse()
        response.content_length = served.declared.get(request.match_info["name"], len(data))
        await response.prepare(request)
        await response.write(data[: served.first])
        if served.gate is not None:
            await served.gate.wait()
        await response.write(data[served.first :])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    served.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield served
    finally:
        if served.gate is not None:
            served.gate.set()
        await runner.cleanup()


# -- adding images ----------------------------------------------------------------------------


async def test_add_a_local_qcow2_with_and_without_checksum(
    node: ManagementNode, tmp_path: Path
) -> None:
    lab_ = await lab(node, tmp_path)
    source = qcow2(tmp_path / "disk.qcow2")
    image = await ok(
        node,
        "AddImage",
        name="cirros",
        url=str(source),
        format="qcow2",
        checksum=sha256(source),
        userTags=["mine"],
    )
    assert image["status"] == "Ready" and image["format"] == "qcow2"
    assert image["size"] == 64 * MiB and image["actualSize"] > 0
    assert image["md5sum"] == hashlib.md5(source.read_bytes()).hexdigest()
    assert image["mediaType"] == "RootVolumeTemplate" and image["platform"] == "Linux"
    copy = lab_.bs_dir / f"{image['uuid']}.qcow2"
    assert image["backupStorageRefs"] == [
        {"backupStorageUuid": lab_.bs["uuid"], "installPath": str(copy), "status": "Ready"}
    ]
    assert copy.read_bytes() == source.read_bytes()
    assert [t["tag"] for t in await ok(node, "QueryUserTag")] == ["mine"]

    plain = await ok(node, "AddImage", name="plain", url=str(source))
    assert plain["format"] == "qcow2"
    assert plain["backupStorageRefs"][0]["installPath"] == str(lab_.bs_dir / f"{plain['uuid']}.img")
    md5 = "md5:" + hashlib.md5(source.read_bytes()).hexdigest().upper()  # any case
    await ok(node, "AddImage", name="md5", url=str(source), checksum=md5)
    found = await ok(node, "QueryImage", conditions=["status=Ready"])
    assert sorted(i["name"] for i in found) == ["cirros", "md5", "plain"]
    assert len(os.listdir(lab_.bs_dir)) == 3


async def test_add_a_raw_disk_over_http_relays_progress(
    node: ManagementNode, tmp_path: Path, http: Files
) -> None:
    lab_ = await lab(node, tmp_path)
    data = raw_disk(3 * MiB)
    http.files["disk.raw"] = data
    events = progress_events(node)
    image = await ok(
        node,
        "AddImage",
        name="raw",
        url=f"{http.url}/disk.raw",
        format="raw",
        checksum="sha256:" + hashlib.sha256(data).hexdigest(),
        platform="Other",
    )
    assert image["status"] == "Ready" and image["format"] == "raw"
    assert image["size"] == len(data) and image["platform"] == "Other"
    assert (lab_.bs_dir / f"{image['uuid']}.raw").read_bytes() == data

    assert len(events) >= 3, events  # the start, at least one step, the end
    assert {(e["imageUuid"], e["backupStorageUuid"], e["stage"]) for e in events} == {
        (image["uuid"], lab_.bs["uuid"], "download")
    }
    assert {e["total"] for e in events} == {len(data)}
    done = [e["progress"] for e in events]
    assert done == sorted(done) and done[0] == 0 and done[-1] == len(data)


async def test_an_image_is_not_usable_while_it_downloads(
    node: ManagementNode, tmp_path: Path, http: Files
) -> None:
    lab_ = await lab(node, tmp_path)
    http.files["slow.raw"] = raw_disk(3 * MiB)
    http.gate = asyncio.Event()
    events = progress_events(node)
    adding = asyncio.create_task(
        node.call("AddImage", {"name": "slow", "url": f"{http.url}/slow.raw"})
    )
    await until(lambda: bool(events))
    [image] = await ok(node, "QueryImage")
    assert image["status"] == "Downloading"
    refused = await fails(node, "DeleteImage", SysErrors.INVALID_STATE, uuid=image["uuid"])
    assert "being downloaded" in refused

    def use(session: Any) -> None:
        ready_image(session, image["uuid"])

    with pytest.raises(OperationError, match="it is Downloading"):
        await node.db.run(use)
    http.gate.set()
    reply = await adding
    assert reply.success, reply.error
    assert reply.inventory is not None and reply.inventory["status"] == "Ready"
    assert (await node.db.run(lambda s: ready_image(s, image["uuid"]).name)) == "slow"
    assert os.listdir(lab_.bs_dir) == [f"{image['uuid']}.img"]


# -- failures leave nothing --------------------------------------------------------------------


async def test_failed_downloads_leave_nothing_behind(
    node: ManagementNode, tmp_path: Path, http: Files
) -> None:
    lab_ = await lab(node, tmp_path)
    source = qcow2(tmp_path / "disk.qcow2")
    text = tmp_path / "notes.txt"
    text.write_text("not a disk image\n" * 100)
    closed = free_port()
    bad_sha = "sha256:" + "0" * 64
    cases: list[tuple[dict[str, Any], str]] = [
        ({"url": str(source), "checksum": bad_sha}, "checksum mismatch"),
        ({"url": str(tmp_path / "missing.qcow2")}, "does not exist"),
        ({"url": f"{http.url}/missing.qcow2"}, "HTTP 404"),
        ({"url": f"http://127.0.0.1:{closed}/disk.qcow2"}, "cannot reach"),
        ({"url": str(text)}, "is not a disk image"),
        ({"url": str(source), "format": "raw"}, "is a qcow2 image, not raw"),
        ({"url": str(source), "mediaType": "ISO"}, "an ISO must be an iso image"),
    ]
    for params, reason in cases:
        error = await add_fails(node, name="bad", userTags=["doomed"], **params)
        assert error.code == SysErrors.OPERATION_ERROR, error
        assert error.description.startswith("cannot add image bad from "), error
        assert reason in str(error), (reason, str(error))
        await assert_nothing_left(node, lab_.bs_dir)

    error = await add_fails(node, name="bad", url=str(source), checksum=bad_sha)
    agent = error.root_cause()
    assert agent.details.startswith(f"checksum mismatch for {source}: expected {bad_sha}")


async def test_bad_parameters_are_refused_up_front(node: ManagementNode, tmp_path: Path) -> None:
    lab_ = await lab(node, tmp_path)
    source = qcow2(tmp_path / "disk.qcow2")
    refusals: list[tuple[dict[str, Any], str]] = [
        ({"url": "disk.qcow2"}, "absolute local path"),
        ({"url": "ftp://example.com/disk.qcow2"}, "absolute local path"),
        ({"url": "http:///disk.qcow2"}, "names no host"),
        ({"url": str(source), "checksum": "sha1:" + "0" * 40}, "sha256:<64 hex digits>"),
        ({"url": str(source), "checksum": "sha256:abc"}, "sha256:<64 hex digits>"),
        ({"url": str(source), "format": "vmdk"}, "must be one of"),
        ({"url": str(source), "format": "iso"}, "mediaType ISO"),
        ({"url": str(source), "platform": "Plan9"}, "must be one of"),
    ]
    for params, reason in refusals:
        text = await fails(node, "AddImage", SysErrors.INVALID_ARGUMENT, name="bad", **params)
        assert reason in text, (reason, text)
    text = await fails(
        node,
        "AddImage",
        SysErrors.RESOURCE_NOT_FOUND,
        name="bad",
        url=str(source),
        backupStorageUuids=["0" * 32],
    )
    assert "BackupStorageVO" in text
    await assert_nothing_left(node, lab_.bs_dir)


async def test_no_backup_storage_is_a_clear_error(node: ManagementNode, tmp_path: Path) -> None:
    source = qcow2(tmp_path / "disk.qcow2")
    text = await fails(node, "AddImage", SysErrors.OPERATION_ERROR, name="x", url=str(source))
    assert "no backup storage" in text
    await assert_nothing_left(node)


async def test_a_failure_on_one_backup_storage_removes_the_other_copies(
    node: ManagementNode, tmp_path: Path
) -> None:
    lab_ = await lab(node, tmp_path)
    second_dir = tmp_path / "bs2"
    second = await ok(
        node, "AddLocalBackupStorage", name="bs2", zoneUuid=lab_.zone_uuid, url=str(second_dir)
    )
    source = qcow2(tmp_path / "disk.qcow2")
    both = await ok(node, "AddImage", name="both", url=str(source))
    assert sorted(r["backupStorageUuid"] for r in both["backupStorageRefs"]) == sorted(
        [lab_.bs["uuid"], second["uuid"]]
    )
    assert {r["status"] for r in both["backupStorageRefs"]} == {"Ready"}
    kept = [f"{both['uuid']}.img"]
    assert os.listdir(lab_.bs_dir) == kept and os.listdir(second_dir) == kept

    only = await ok(
        node, "AddImage", name="one", url=str(source), backupStorageUuids=[second["uuid"]]
    )
    assert [r["backupStorageUuid"] for r in only["backupStorageRefs"]] == [second["uuid"]]
    await ok(node, "DeleteImage", uuid=only["uuid"])
    await ok(node, "ExpungeImage", uuid=only["uuid"])

    # The second storage's directory becomes a plain file: nothing can be written there.
    shutil.rmtree(second_dir)
    second_dir.write_text("in the way")
    error = await add_fails(node, name="half", url=str(source), userTags=["doomed"])
    assert "backup storage bs2" in str(error) and "File exists" in str(error), error
    assert os.listdir(lab_.bs_dir) == kept  # the first storage's copy of "half" is gone
    assert [i["name"] for i in await ok(node, "QueryImage")] == ["both"]
    assert await ok(node, "QueryUserTag") == []


async def test_a_cancelled_add_removes_its_copy(
    node: ManagementNode, tmp_path: Path, http: Files
) -> None:
    lab_ = await lab(node, tmp_path)
    http.files["slow.raw"] = raw_disk(3 * MiB)
    http.gate = asyncio.Event()
    events = progress_events(node)
    msg = AddImage.from_params({"name": "slow", "url": f"{http.url}/slow.raw"})
    adding = asyncio.create_task(node.plugin(ImagePlugin).add(msg))
    await until(lambda: bool(events))
    assert [n for n in os.listdir(lab_.bs_dir) if n.endswith(".part")]  # on its way
    adding.cancel()
    await asyncio.sleep(0.1)
    http.gate.set()  # the agent finishes its copy; the rollback then deletes it
    with pytest.raises(asyncio.CancelledError):
        await adding
    await assert_nothing_left(node, lab_.bs_dir)


async def test_a_cancelled_add_stops_its_download_on_the_agent(
    node: ManagementNode, tmp_path: Path, http: Files
) -> None:
    """Cancelled (as the node's stop cancels the API calls still running), AddImage has the
    agent stop its download: it ends with the download stalled, and leaves nothing."""
    lab_ = await lab(node, tmp_path)
    http.files["slow.raw"] = raw_disk(3 * MiB)
    http.gate = asyncio.Event()  # never opened
    events = progress_events(node)
    msg = AddImage.from_params({"name": "slow", "url": f"{http.url}/slow.raw"})
    adding = asyncio.create_task(node.plugin(ImagePlugin).add(msg))
    await until(lambda: bool(events))
    assert [n for n in os.listdir(lab_.bs_dir) if n.endswith(".part")]  # on its way
    adding.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(adding, 60)  # a guard against a hang, not a timing
    await assert_nothing_left(node, lab_.bs_dir)


# -- bounds: images naming host files, free space, stalls ----------------------------------------


@pytest.mark.parametrize("case", list(CASES))
async def test_images_naming_host_files_are_refused(
    node: ManagementNode, tmp_path: Path, case: str
) -> None:
    lab_ = await lab(node, tmp_path)
    secret = host_secret(tmp_path / "host")
    image = craft(case, tmp_path / "crafted", secret)
    error = await add_fails(node, name="evil", url=str(image.path), userTags=["doomed"])
    assert error.description == f"cannot add image evil from {image.path}", error
    agent = error.root_cause().details
    assert re.search(image.reason, agent) and str(image.path) in agent, agent
    await assert_nothing_left(node, lab_.bs_dir)
    assert secret.read_bytes() == SECRET


async def test_images_naming_host_files_are_refused_over_http(
    node: ManagementNode, tmp_path: Path, http: Files
) -> None:
    lab_ = await lab(node, tmp_path)
    secret = host_secret(tmp_path / "host")
    for case in ("backing file", "external data file", "json: backing file"):
        image = craft(case, tmp_path / "crafted", secret)
        http.files[image.path.name] = image.path.read_bytes()
        url = f"{http.url}/{image.path.name}"
        error = await add_fails(node, name="evil", url=url, format="qcow2")
        assert re.search(image.reason, str(error)) and url in str(error), str(error)
        await assert_nothing_left(node, lab_.bs_dir)


async def test_a_download_larger_than_the_free_space_is_refused(
    node: ManagementNode, tmp_path: Path, http: Files
) -> None:
    lab_ = await lab(node, tmp_path)
    http.files["huge.raw"] = raw_disk(2 * MiB)
    http.declared["huge.raw"] = huge = 2**50
    http.gate = asyncio.Event()  # whatever came after the headers would wait here
    error = await add_fails(node, name="huge", url=f"{http.url}/huge.raw")
    details = error.root_cause().details
    assert re.search(rf"is {huge} bytes .*, more than the \d+ bytes .* free on ", details), details
    await assert_nothing_left(node, lab_.bs_dir)


@pytest.mark.parametrize("first", [0, MiB])
async def test_a_stalled_download_fails_after_image_download_stall_timeout(
    node: ManagementNode, tmp_path: Path, http: Files, first: int
) -> None:
    lab_ = await lab(node, tmp_path)
    for bad in ("0", "-1", "86401", "soon"):
        await fails(
            node,
            "UpdateGlobalConfig",
            SysErrors.INVALID_ARGUMENT,
            category="image",
            name="download.stallTimeout",
            value=bad,
        )
    await ok(node, "UpdateGlobalConfig", category="image", name="download.stallTimeout", value="1")
    http.files["stuck.raw"] = raw_disk(3 * MiB)
    http.gate = asyncio.Event()  # never opened: headers (and ``first`` bytes), then nothing
    http.first = first
    error = await add_fails(node, name="stuck", url=f"{http.url}/stuck.raw")
    assert "stalled: nothing received for 1s" in str(error), str(error)
    await assert_nothing_left(node, lab_.bs_dir)


# -- deleting, recovering, expunging -------------------------------------------------------------


async def test_delete_delay_recover_then_expunge(node: ManagementNode, tmp_path: Path) -> None:
    lab_ = await lab(node, tmp_path)
    source = qcow2(tmp_path / "disk.qcow2")
    image = await ok(node, "AddImage", name="img", url=str(source), userTags=["mine"])
    copy = Path(image["backupStorageRefs"][0]["installPath"])

    text = await fails(node, "ExpungeImage", SysErrors.INVALID_STATE, uuid=image["uuid"])
    assert text == "cannot expunge image img: it is Ready"
    text = await fails(node, "RecoverImage", SysErrors.INVALID_STATE, uuid=image["uuid"])
    assert "it is Ready" in text

    await ok(node, "DeleteImage", uuid=image["uuid"])  # Delay, the default
    [deleted] = await ok(node, "QueryImage")
    assert deleted["status"] == "Deleted" and copy.exists()
    with pytest.raises(OperationError, match="it is Deleted"):
        await node.db.run(lambda s: ready_image(s, image["uuid"]))
    await ok(node, "DeleteImage", uuid=image["uuid"])  # again: nothing changes
    recovered = await ok(node, "RecoverImage", uuid=image["uuid"])
    assert recovered["status"] == "Ready"
    assert recovered["backupStorageRefs"][0]["status"] == "Ready"

    await ok(node, "DeleteImage", uuid=image["uuid"])
    await ok(node, "ExpungeImage", uuid=image["uuid"])
    assert not copy.exists()
    await assert_nothing_left(node, lab_.bs_dir)
    await fails(node, "ExpungeImage", SysErrors.RESOURCE_NOT_FOUND, uuid=image["uuid"])


async def test_never_keeps_and_direct_expunges_at_once(
    node: ManagementNode, tmp_path: Path
) -> None:
    lab_ = await lab(node, tmp_path)
    source = qcow2(tmp_path / "disk.qcow2")
    await ok(node, "UpdateGlobalConfig", category="image", name="deletionPolicy", value="Never")
    kept = await ok(node, "AddImage", name="kept", url=str(source))
    await ok(node, "DeleteImage", uuid=kept["uuid"])
    assert [i["status"] for i in await ok(node, "QueryImage")] == ["Deleted"]

    await ok(node, "UpdateGlobalConfig", category="image", name="deletionPolicy", value="Direct")
    gone = await ok(node, "AddImage", name="gone", url=str(source), userTags=["t"])
    await ok(node, "DeleteImage", uuid=gone["uuid"])
    assert [i["name"] for i in await ok(node, "QueryImage")] == ["kept"]
    assert os.listdir(lab_.bs_dir) == [f"{kept['uuid']}.img"]
    await ok(node, "DeleteImage", uuid=kept["uuid"])  # Direct expunges a Deleted one too
    await assert_nothing_left(node, lab_.bs_dir)

    [period] = await ok(
        node, "QueryGlobalConfig", conditions=["category=image", "name=expungePeriod"]
    )
    assert period["value"] == "86400"
