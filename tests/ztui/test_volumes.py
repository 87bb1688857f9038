"""Volumes in ztui, on a simulator lab: the volumes view (every volume with its VM and
device, the snapshot tree of the one under the cursor, the snapshot the volume stands on
marked), its data-volume verbs (new, attach, detach, grow, delete, recover, expunge) and
snapshot verbs (take, revert, delete) through their dialogs, a refusal of the node shown
with nothing else changed, the VM verbs on a root volume (snapshot, image), the create-VM
dialog's data disks, a node without the snapshot APIs and read-only mode; each checked
against what the API holds afterwards.

The simulator host runs no QEMU: its agent does with qemu-img what libvirt does live, so
a running VM's volume is snapshotted there as on a real host."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input, Label, ProgressBar, Select, SelectionList

from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode, SysErrors
from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.vm.conftest import Lab, make_lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from tests.ztui.test_keys import notifications
from ztui.dialogs.choice import ChoiceDialog
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.create_vm import CreateVmDialog
from ztui.dialogs.volume import (
    NameDialog,
    NewVolumeDialog,
    SizeDialog,
    check_new_size,
    check_new_volume,
)
from ztui.formatting import Formatter
from ztui.screens.images import ImagesScreen
from ztui.screens.vm_detail import VmDetailScreen, disks_line
from ztui.screens.vms import VmsScreen
from ztui.screens.volumes import VolumesScreen
from ztui.volumes import VolumeData, device_name, parse_size, snapshot_trees
from ztui.widgets.snapshot_tree import CURRENT_MARK, snapshot_label

GiB = 1 << 30


@dataclass
class VolLab:
    lab: Lab
    node: ManagementNode
    offering: dict[str, Any]
    """Disk offering ``disk-1g``."""
    web: dict[str, Any]
    """A running VM with a data volume of ``disk-1g`` (vdb)."""
    db: dict[str, Any]
    """A stopped VM (its volumes can be snapshotted on the simulator)."""
    spare: dict[str, Any]
    """A detached 2G data volume."""


async def make_vol_lab(node: ManagementNode, root: Path, *, web: bool = True) -> VolLab:
    """Disk offering ``disk-1g``; VM ``web`` running with a data disk of it (unless
    ``web`` is false), VM ``db`` stopped, data volume ``spare`` (2G) detached."""
    lab = await make_lab(node, root)
    offering = await ok(node, "CreateDiskOffering", name="disk-1g", diskSize=GiB)
    common = {"instanceOfferingUuid": lab.offering["uuid"], "imageUuid": lab.image_uuid}
    disks = {"dataDiskOfferingUuids": [offering["uuid"]]}
    web_vm = await ok(node, "CreateVmInstance", name="web", **disks, **common) if web else {}
    db = await ok(node, "CreateVmInstance", name="db", strategy="CreateStopped", **common)
    spare = await ok(node, "CreateDataVolume", name="spare", diskSize=2 * GiB)
    return VolLab(lab, node, offering, web_vm, db, spare)


async def db_snapshots(node: ManagementNode, db: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """On db's root volume: s1, s2 on it, then a revert to s1 and s3 on it (a branch)."""
    root = db["rootVolumeUuid"]
    s1 = await ok(node, "CreateVolumeSnapshot", volumeUuid=root, name="s1")
    s2 = await ok(node, "CreateVolumeSnapshot", volumeUuid=root, name="s2")
    await ok(node, "RevertVolumeFromSnapshot", uuid=s1["uuid"])
    s3 = await ok(node, "CreateVolumeSnapshot", volumeUuid=root, name="s3")
    return {"s1": s1, "s2": s2, "s3": s3}


@pytest.fixture
async def vol(node: ManagementNode, tmp_path: Path) -> VolLab:
    return await make_vol_lab(node, tmp_path)


async def volumes_view(pilot: Pilot) -> VolumesScreen:
    await pilot.press("9")
    return await shown(pilot, VolumesScreen)


def tree_lines(screen: VolumesScreen) -> list[str]:
    """The tree's lines as text, indented two spaces a level (the root first)."""
    tree = screen.snapshot_tree
    lines = []

    def walk(node: Any, depth: int) -> None:
        lines.append("  " * depth + str(node.label))
        for child in node.children:
            walk(child, depth + 1)

    walk(tree.root, 0)
    return lines


async def volume(node: ManagementNode, uuid: str) -> dict[str, Any] | None:
    found = await ok(node, "QueryVolume", conditions=[f"uuid={uuid}"])
    return found[0] if found else None


async def error_shown(pilot: Pilot, screen: Any) -> str:
    await wait_until(pilot, lambda: screen.status.has_class("-error"), what="the refusal")
    return str(screen.status.text)


# -- pure ---------------------------------------------------------------------------------


def test_sizes_devices_trees_and_forms() -> None:
    assert parse_size("10G") == 10 * GiB
    assert parse_size("512m") == 512 << 20
    assert parse_size("1.5G") == 3 * GiB // 2
    assert parse_size("2GiB") == 2 * GiB
    assert parse_size("4096") == 4096
    for bad in ("", "G", "ten", "0", "-1G", "1X"):
        assert parse_size(bad) is None, bad
    assert [device_name(i) for i in (0, 1, 2, 25, 26)] == ["vda", "vdb", "vdc", "vdz", "vdaa"]
    assert device_name(None) == ""

    snaps = [
        {"uuid": "a", "name": "a", "createDate": "1", "parentUuid": None},
        {"uuid": "b", "name": "b", "createDate": "2", "parentUuid": "a"},
        {
            "uuid": "c",
            "name": "c",
            "createDate": "3",
            "parentUuid": "a",
            "latest": True,
            "size": 65536,
        },
        {"uuid": "d", "name": "d", "createDate": "4", "parentUuid": None, "full": True},
    ]
    [a, d] = snapshot_trees(reversed(snaps))
    assert [n.uuid for n in a.walk()] == ["a", "b", "c"]
    assert [n.uuid for n in a.children if n.current] == ["c"]
    assert d.uuid == "d" and not d.children
    fmt = Formatter(mask_volatile=True)
    label = snapshot_label(a.children[1], fmt)
    assert str(label) == f"c  64K · <date> {CURRENT_MARK}"
    assert str(snapshot_label(d, fmt)) == "d  full · <date>"

    assert check_new_volume(" data ", "10G", None) == {"name": "data", "diskSize": 10 * GiB}
    assert check_new_volume("data", "", "o1") == {"name": "data", "diskOfferingUuid": "o1"}
    assert check_new_volume("", "10G", None) == "name: required"
    assert check_new_volume("data", "10G", "o1").startswith("size: give a size or")  # type: ignore[union-attr]
    assert check_new_volume("data", "lots", None).startswith("size: like 10G")  # type: ignore[union-attr]

    volumes = [
        {"deviceId": 1, "size": GiB, "type": "Data", "name": "logs"},
        {"deviceId": 0, "size": 64 << 20, "type": "Root", "name": "ROOT-for-web"},
    ]
    assert disks_line(volumes, fmt) == "vda 64M · vdb 1G logs"
    assert disks_line([], fmt) == "none"

    assert check_new_size("2G", GiB) == 2 * GiB
    assert check_new_size("1G", GiB) == "size: larger than now (1G): a volume only grows"
    assert check_new_size("big", GiB) == "size: like 20G or 1.5T"

    data = VolumeData(vms=[{"uuid": "v", "name": "web"}])
    assert data.row({"uuid": "x", "vmInstanceUuid": "v", "deviceId": 1})["device"] == "vdb"
    row = data.row({"uuid": "x", "vmInstanceUuid": None, "lastVmInstanceUuid": "v"})
    assert (row["vmName"], row["device"]) == ("(web)", "")


# -- the view -----------------------------------------------------------------------------


async def test_the_view_lists_every_volume_and_the_snapshot_tree(vol: VolLab) -> None:
    node = vol.node
    snaps = await db_snapshots(node, vol.db)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await volumes_view(pilot)
        table = screen.table
        fields = ("name", "type", "size", "vmName", "device", "status")
        assert list(zip(*(table.column_values(f) for f in fields), strict=True)) == [
            ("ROOT-for-db", "Root", "64M", "db", "vda", "Ready"),
            ("ROOT-for-web", "Root", "64M", "web", "vda", "Ready"),
            ("DATA-1-for-web", "Data", "1G", "web", "vdb", "Ready"),
            ("spare", "Data", "2G", "", "", "Ready"),
        ]
        assert screen.status.text == "4 volumes (2 data)"

        # The cursor is on db's root volume: its snapshots, s3 on a branch from s1.
        assert table.cursor_row_data is not None
        assert table.cursor_row_data["uuid"] == vol.db["rootVolumeUuid"]
        lines = tree_lines(screen)
        assert lines[0] == "ROOT-for-db"
        assert [line.strip().split(" ")[0] for line in lines[1:]] == ["s1", "s2", "s3"]
        assert lines[1].startswith("  s1") and lines[2].startswith("    s2")
        assert lines[3].startswith("    s3") and lines[3].endswith(CURRENT_MARK)
        assert not any(CURRENT_MARK in line for line in lines[:3])
        assert screen.snapshot_tree.cursor_snapshot == snaps["s3"]["uuid"]
        title = str(screen.query_one("#snap-title").render())
        assert title.startswith("Snapshots of ROOT-for-db (vda of db): 3 · ◀")

        # Another volume: its (no) snapshots.
        table.select_key(vol.spare["uuid"])
        await pilot.pause()
        assert tree_lines(screen) == ["spare"]
        assert str(screen.query_one("#snap-title").render()) == "spare: no snapshot · z takes one"

        # A change from elsewhere shows here (the operation's end reads the volumes again).
        await ok(node, "DeleteDataVolume", uuid=vol.spare["uuid"])
        await wait_until(
            pilot,
            lambda: table.rows_by_key[vol.spare["uuid"]]["status"] == "Deleted",
            what="spare to show Deleted",
        )


async def test_the_data_volume_verbs_through_their_dialogs(vol: VolLab) -> None:
    node = vol.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await volumes_view(pilot)
        table = screen.table

        # New: a bad size is said in the dialog; then 1G.
        await pilot.press("n")
        dialog = await shown(pilot, NewVolumeDialog)
        assert dialog.offerings == [("disk-1g (1G)", vol.offering["uuid"])]
        await pilot.press(*"logs", "tab", *"lots", "ctrl+s")
        assert dialog.error_text == "size: like 10G or 512M (or choose a disk offering)"
        dialog.query_one("#size", Input).value = "1G"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "created" in screen.status.text, what="the volume")
        assert screen.status.text == "created data volume logs (1G)"
        [logs] = await ok(node, "QueryVolume", conditions=["name=logs"])
        assert (logs["type"], logs["size"], logs["vmInstanceUuid"]) == ("Data", GiB, None)
        assert table.cursor_row_data is not None and table.cursor_row_data["uuid"] == logs["uuid"]

        # Attach it to db (chosen in the dialog), then detach it.
        await pilot.press("a")
        pick = await shown(pilot, ChoiceDialog)
        assert [label for label, _ in pick.choices] == ["db (Stopped)", "web (Running)"]
        pick.query_one("#choice", Select).value = vol.db["uuid"]
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "attached" in screen.status.text, what="the attach")
        assert screen.status.text == "attached logs to db as vdb"
        attached = await volume(node, logs["uuid"])
        assert attached is not None and attached["vmInstanceUuid"] == vol.db["uuid"]
        assert table.rows_by_key[logs["uuid"]]["device"] == "vdb"
        await pilot.press("a")  # attached already: said, no dialog
        await pilot.pause()
        assert "attached to db already" in notifications(app)[-1]
        assert app.screen is screen
        await pilot.press("x")
        await wait_until(pilot, lambda: "detached" in screen.status.text, what="the detach")
        assert screen.status.text == "detached logs from db"
        detached = await volume(node, logs["uuid"])
        assert detached is not None and detached["vmInstanceUuid"] is None
        assert table.rows_by_key[logs["uuid"]]["vmName"] == "(db)"

        # Grow it: never smaller (said in the dialog), then to 2G.
        await pilot.press("plus")
        size_dialog = await shown(pilot, SizeDialog)
        await pilot.press(*"512M", "enter")
        assert size_dialog.error_text == "size: larger than now (1G): a volume only grows"
        size_dialog.query_one("#size", Input).value = "2G"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "grew" in screen.status.text, what="the growth")
        assert screen.status.text == "grew logs to 2G"
        assert (await volume(node, logs["uuid"]) or {}).get("size") == 2 * GiB
        assert table.rows_by_key[logs["uuid"]]["size"] == 2 * GiB

        # Delete (after a question; the policy is Delay: it is kept Deleted), recover it,
        # delete it again and expunge it.
        await pilot.press("d")
        confirm = await shown(pilot, ConfirmDialog)
        assert confirm.question.startswith("Delete data volume logs?\nIt is detached first")
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.status.text == "logs deleted", what="the delete")
        assert (await volume(node, logs["uuid"]) or {}).get("status") == "Deleted"
        assert table.rows_by_key[logs["uuid"]]["status"] == "Deleted"
        await pilot.press("a")
        await pilot.pause()
        assert "logs is Deleted: recover it first" in notifications(app)[-1]
        await pilot.press("R")
        await wait_until(pilot, lambda: screen.status.text == "logs recovered", what="recover")
        assert (await volume(node, logs["uuid"]) or {}).get("status") == "Ready"
        await pilot.press("E")  # nothing Deleted is selected
        await pilot.pause()
        assert notifications(app)[-1] == "Nothing to expunge: logs is Ready."
        await pilot.press("d")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.status.text == "logs deleted", what="the delete")
        await pilot.press("E")
        confirm = await shown(pilot, ConfirmDialog)
        assert "deleted for good" in confirm.question
        await pilot.press("y")
        await wait_until(pilot, lambda: screen.status.text == "logs expunged", what="expunge")
        assert await volume(node, logs["uuid"]) is None
        assert logs["uuid"] not in table.rows_by_key

        # A root volume takes no data-volume verb.
        table.select_key(vol.web["rootVolumeUuid"])
        await pilot.press("d")
        await pilot.pause()
        assert notifications(app)[-1] == "Nothing to delete: ROOT-for-web is a root volume."
        assert app.screen is screen


async def test_the_snapshot_verbs_and_a_refused_revert(vol: VolLab) -> None:
    node = vol.node
    root = vol.db["rootVolumeUuid"]
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await volumes_view(pilot)
        screen.table.select_key(root)
        await pilot.pause()

        # Two snapshots of db's root volume, named in the dialog.
        for name in ("before", "after"):
            await pilot.press("z")
            dialog = await shown(pilot, NameDialog)
            dialog.query_one("#name", Input).value = name
            await pilot.press("enter")
            await wait_until(pilot, lambda: "took" in screen.status.text, what="the snapshot")
            assert screen.status.text == f"took snapshot {name} of ROOT-for-db"
        snaps = {s["name"]: s for s in await ok(node, "QueryVolumeSnapshot")}
        assert snaps["after"]["parentUuid"] == snaps["before"]["uuid"]
        assert snaps["after"]["latest"] and snaps["after"]["volumeUuid"] == root
        lines = tree_lines(screen)
        assert [line.strip().split(" ")[0] for line in lines] == ["ROOT-for-db", "before", "after"]
        assert lines[2].endswith(CURRENT_MARK)

        # Revert to "before" (chosen in the tree, after a question): it is where the volume
        # stands now.
        tree = screen.snapshot_tree
        await pilot.press("tab")
        assert tree.has_focus
        await pilot.press("k")
        assert tree.cursor_snapshot == snaps["before"]["uuid"]
        await pilot.press("v")
        confirm = await shown(pilot, ConfirmDialog)
        assert confirm.question.startswith("Revert volume ROOT-for-db to snapshot before?")
        await pilot.press("y")
        await wait_until(pilot, lambda: "reverted" in screen.status.text, what="the revert")
        assert screen.status.text == "reverted ROOT-for-db to snapshot before"
        snaps = {s["name"]: s for s in await ok(node, "QueryVolumeSnapshot")}
        assert snaps["before"]["latest"] and not snaps["after"]["latest"]
        assert tree_lines(screen)[1].endswith(CURRENT_MARK)

        # Delete "after" (after a question).
        await pilot.press("j")
        assert tree.cursor_snapshot == snaps["after"]["uuid"]
        await pilot.press("D")
        confirm = await shown(pilot, ConfirmDialog)
        assert confirm.question.startswith("Delete snapshot after of ROOT-for-db?")
        await pilot.press("y")
        await wait_until(pilot, lambda: "deleted" in screen.status.text, what="the delete")
        assert [s["name"] for s in await ok(node, "QueryVolumeSnapshot")] == ["before"]
        assert len(tree_lines(screen)) == 2

        # db runs: the node refuses the revert; it is shown and nothing changes.
        await ok(node, "StartVmInstance", uuid=vol.db["uuid"])
        tree.focus()
        tree.move_cursor(tree.root.children[0])
        await pilot.press("v")
        await shown(pilot, ConfirmDialog)
        await pilot.press("y")
        text = await error_shown(pilot, screen)
        assert text.startswith("RevertVolumeFromSnapshot ROOT-for-db: ")
        assert "Running" in text
        assert any(n.startswith("RevertVolumeFromSnapshot") for n in notifications(app))
        assert [s["name"] for s in await ok(node, "QueryVolumeSnapshot")] == ["before"]
        assert tree_lines(screen)[1].endswith(CURRENT_MARK)

        # A running VM's volume is snapshotted live: the tree grows under the marker.
        await pilot.press("z")
        await shown(pilot, NameDialog)
        await pilot.press("enter")
        await wait_until(pilot, lambda: len(tree_lines(screen)) == 3, what="the live snapshot")
        assert len(await ok(node, "QueryVolumeSnapshot")) == 2
        assert tree_lines(screen)[2].endswith(CURRENT_MARK)


async def test_the_vm_verbs_on_a_root_volume(vol: VolLab) -> None:
    node = vol.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        assert screen.table.select_key(vol.db["uuid"])

        await pilot.press("z")
        dialog = await shown(pilot, NameDialog)
        assert dialog.query_one("#name", Input).value == "db-snap"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "took" in screen.status.text, what="the snapshot")
        assert screen.status.text == "took snapshot db-snap of db's root volume (see :volumes)"
        [snap] = await ok(node, "QueryVolumeSnapshot")
        assert (snap["name"], snap["volumeUuid"]) == ("db-snap", vol.db["rootVolumeUuid"])

        await pilot.press("I")
        dialog = await shown(pilot, NameDialog)
        assert dialog.query_one("#name", Input).value == "db-image"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "created image" in screen.status.text, what="the image")
        assert screen.status.text == "created image db-image of db (64M)"
        [image] = await ok(node, "QueryImage", conditions=["name=db-image"])
        assert (image["status"], image["mediaType"]) == ("Ready", "RootVolumeTemplate")

        # web runs: the node refuses to make an image of it, and says why.
        assert screen.table.select_key(vol.web["uuid"])
        await pilot.press("I")
        await shown(pilot, NameDialog)
        await pilot.press("enter")
        text = await error_shown(pilot, screen)
        assert text.startswith("CreateRootVolumeTemplateFromRootVolume: ")
        assert await ok(node, "QueryImage", conditions=["name=web-image"]) == []

        # The same keys in db's detail view.
        assert screen.table.select_key(vol.db["uuid"])
        await pilot.press("enter")
        detail = await shown(pilot, VmDetailScreen)
        assert detail.found["disks"] == "vda 64M"
        await pilot.press("z")
        dialog = await shown(pilot, NameDialog)
        dialog.query_one("#name", Input).value = "db-snap-2"
        await pilot.press("enter")
        await wait_until(pilot, lambda: "took" in detail.status.text, what="the snapshot")
        snaps = await ok(node, "QueryVolumeSnapshot", conditions=["name=db-snap-2"])
        assert [s["volumeUuid"] for s in snaps] == [vol.db["rootVolumeUuid"]]


async def test_an_image_being_made_gets_a_progress_bar(vol: VolLab) -> None:
    """CreateRootVolumeTemplateFromRootVolume reports its copy's progress as a download's:
    the images view shows a Creating image's bar as a Downloading one's."""
    app = app_on(vol.node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("3")
        screen = await shown(pilot, ImagesScreen)
        image = {"uuid": "i" * 32, "name": "db-image", "status": "Creating", "size": 1}
        screen.apply_image(image)
        app.dispatch_event(
            "/image/download/progress",
            {"imageUuid": image["uuid"], "backupStorageUuid": "b", "progress": 5, "total": 10},
        )
        await pilot.pause()
        [bar] = screen.query(ProgressBar)
        assert (bar.progress, bar.total) == (5, 10)
        assert screen.table.rows_by_key[image["uuid"]]["size"] is None  # not known yet


async def test_the_create_vm_dialog_adds_data_disks(vol: VolLab) -> None:
    node = vol.node
    big = await ok(node, "CreateDiskOffering", name="disk-2g", diskSize=2 * GiB)
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("2")
        screen = await shown(pilot, VmsScreen)
        await pilot.press("n")
        dialog = await shown(pilot, CreateVmDialog)
        await wait_until(pilot, lambda: dialog.loaded, what="the dialog's choices")
        root_disk = dialog.query_one("#root-disk", Label)
        assert str(root_disk.content) == "root disk 64M (the image's size)"
        disks = dialog.query_one("#disks", SelectionList)
        assert [str(disks.get_option_at_index(i).prompt) for i in range(disks.option_count)] == [
            "disk-1g (1G)",
            "disk-2g (2G)",
        ]
        disks.select(big["uuid"])
        disks.select(vol.offering["uuid"])
        await pilot.press(*"app", "ctrl+s")
        await wait_until(pilot, lambda: screen.status.text == "created app", what="the VM")
        [vm] = await ok(node, "QueryVmInstance", conditions=["name=app"])
        found = await ok(node, "QueryVolume", conditions=[f"vmInstanceUuid={vm['uuid']}"])
        data = sorted((v["deviceId"], v["size"]) for v in found if v["type"] == "Data")
        assert data == [(1, GiB), (2, 2 * GiB)]  # in the list's order: vdb, vdc


async def test_a_node_without_snapshots_has_no_snapshot_panel(
    vol: VolLab, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_on(vol.node)
    async with app.run_test(size=SMALL) as pilot:
        session = app.session
        call = session.call

        async def without_plugin(api: str, params: Any = None) -> ApiReply:
            if "VolumeSnapshot" in api:
                return ApiReply.failure(
                    ErrorCode(SysErrors.INVALID_ARGUMENT, f"no API named {api}")
                )
            return await call(api, params)

        monkeypatch.setattr(session, "call", without_plugin)
        screen = await volumes_view(pilot)
        assert screen.snapshots is None
        assert not screen.status.has_class("-error")
        assert not screen.snapshot_tree.display
        for action in ("snapshot", "revert", "delete_snapshot"):
            assert screen.check_action(action, ()) is False
        assert not notifications(app)


async def test_read_only_disables_the_volume_verbs(vol: VolLab) -> None:
    app = app_on(vol.node, read_only=True)
    async with app.run_test(size=SMALL) as pilot:
        screen = await volumes_view(pilot)
        for action in ("create", "attach", "detach", "volume_verb", "grow", "snapshot",
                       "revert", "delete_snapshot"):  # fmt: skip
            assert screen.check_action(action, ()) is None
        await pilot.press("n")
        await pilot.pause(0.2)
        assert app.screen is screen
        await pilot.press("2")
        vms = await shown(pilot, VmsScreen)
        for action in ("root_snapshot", "root_image"):
            assert vms.check_action(action, ()) is None
