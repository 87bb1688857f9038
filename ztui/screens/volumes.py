"""The volumes view: every volume, root and data, with its sizes, format, status and the
VM and device it is attached as; under it, the snapshots of the volume under the cursor
as a tree, the snapshot the volume's active file stands on marked.

Verbs on data volumes: new (a size or a disk offering), attach to a VM, detach, delete
(as volume.deletionPolicy says), recover and expunge a Deleted one; on any volume: grow
it (ResizeRootVolume / ResizeDataVolume).  Verbs on snapshots:
take one of the volume under the cursor, revert the volume to the snapshot under the
tree's cursor (its VM must be stopped: the node refuses otherwise, and says why), delete
that snapshot.  Everything goes through the node's API; a refusal is shown as every view
shows one, and nothing else changes.

Live: the end of an operation that changes volumes or snapshots (from any view or client:
``VOLUME_APIS``) and a VM's deletion read the volumes again.  The snapshot APIs come with
a plugin: a node without them has no snapshot panel and no snapshot verbs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Static

from ztui.columns import Column, Kind
from ztui.dialogs.choice import ChoiceDialog
from ztui.dialogs.confirm import ConfirmDialog, Wording, question
from ztui.dialogs.volume import NameDialog, NewVolumeDialog, SizeDialog
from ztui.screens.base import ResourceScreen
from ztui.volumes import (
    DATA,
    DELETED,
    VOLUME_APIS,
    SnapshotNode,
    VolumeData,
    snapshot_trees,
)
from ztui.widgets.resource_table import ResourceTable
from ztui.widgets.snapshot_tree import CURRENT_MARK, SnapshotTree

Row = Mapping[str, Any]

REFRESH_DELAY = 0.2
"""Seconds to wait for more ends of operations before reading again (a burst, one read)."""

VOLUME_COLUMNS = (
    Column("name", "name"),
    Column("type", "type"),
    Column("size", "size", Kind.SIZE),
    Column("actualSize", "actual", Kind.SIZE),
    Column("format", "format"),
    Column("status", "status", Kind.STATE),
    Column("vmName", "VM"),
    Column("device", "dev"),
)
VOLUME_NOUN = Wording("data volume", "data volumes")
SNAPSHOT_NOUN = Wording("snapshot", "snapshots")
WARNINGS = {
    "delete": Wording(
        "It is detached first; volume.deletionPolicy decides whether it can be recovered.",
        "They are detached first; volume.deletionPolicy decides whether they can be recovered.",
    ),
    "expunge": Wording(
        "Its file and its snapshots are deleted for good.",
        "Their files and snapshots are deleted for good.",
    ),
}
REVERT_WARNING = (
    "What was written since the latest snapshot is lost. Its VM must be stopped (or the "
    "volume detached)."
)
DELETE_SNAPSHOT_WARNING = (
    "The volume and every other snapshot keep their content (its data is merged into what "
    "stands on it)."
)
SNAPSHOT_ACTIONS = frozenset({"snapshot", "revert", "delete_snapshot"})


class VolumesScreen(ResourceScreen):
    """A table of volumes over the snapshot tree of the one under the cursor."""

    VIEW = "volumes"
    COLUMNS = VOLUME_COLUMNS
    MARKABLE = True
    MUTATING = frozenset(
        {
            "create",
            "attach",
            "detach",
            "volume_verb",
            "grow",
            "snapshot",
            "revert",
            "delete_snapshot",
        }
    )

    DEFAULT_CSS = """
    VolumesScreen #table {
        height: auto;
        max-height: 60%;
        min-height: 3;
    }
    VolumesScreen #snap-title {
        height: 1;
        padding: 0 1;
        background: $panel;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    VolumesScreen.-no-snapshots #snap-title, VolumesScreen.-no-snapshots #snapshots {
        display: none;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "create", "New", id="ztui.volume.create"),
        Binding("a", "attach", "Attach", id="ztui.volume.attach"),
        Binding("x", "detach", "Detach", id="ztui.volume.detach"),
        Binding("d", "volume_verb('delete')", "Delete", id="ztui.volume.delete"),
        Binding("R", "volume_verb('recover')", "Recover", id="ztui.volume.recover", show=False),
        Binding("E", "volume_verb('expunge')", "Expunge", id="ztui.volume.expunge", show=False),
        Binding("plus", "grow", "Grow", id="ztui.volume.grow", show=False),
        Binding("z", "snapshot", "Snapshot", id="ztui.volume.snapshot.create"),
        Binding("v", "revert", "Revert", id="ztui.volume.snapshot.revert"),
        Binding("D", "delete_snapshot", "Del snap", id="ztui.volume.snapshot.delete"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.data = VolumeData()
        self.snapshots: list[dict[str, Any]] | None = None
        """Every volume's snapshots; None while the node has no snapshot API (no panel)."""
        self.shown_volume: str | None = None
        """The uuid of the volume whose snapshots the tree shows."""

    # -- layout -------------------------------------------------------------------

    def compose_body(self) -> ComposeResult:
        yield ResourceTable(self.COLUMNS, markable=self.MARKABLE, fmt=self.fmt, id="table")
        yield Static("", id="snap-title")
        yield SnapshotTree(self.fmt, id="snapshots")
        yield Input(placeholder="/regex  (!regex inverts; Enter keeps, Esc clears)", id="filter")

    @property
    def snapshot_tree(self) -> SnapshotTree:
        return self.query_one(SnapshotTree)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in SNAPSHOT_ACTIONS and self.snapshots is None and self.loads_completed:
            return False  # the node has no snapshot API: hidden
        return super().check_action(action, parameters)

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        await self.read()
        self.show_loaded(self.summary())

    async def read(self) -> None:
        """Query volumes, VMs, disk offerings and snapshots; show them (the status line is
        left as it is)."""
        volumes, vms, offerings, snapshots = await asyncio.gather(
            self.api_query("QueryVolume"),
            self.api_query("QueryVmInstance"),
            self.api_query("QueryDiskOffering"),
            self.plugin_query("QueryVolumeSnapshot"),
        )
        self.data = VolumeData(volumes, vms, offerings)
        self.snapshots = snapshots
        self.set_class(snapshots is None, "-no-snapshots")
        self.table.show(self.data.rows())
        self.show_snapshots()
        self.refresh_bindings()

    def summary(self) -> str:
        table = self.table
        total = len(table.rows_by_key)
        data = sum(1 for r in table.rows_by_key.values() if r.get("type") == DATA)
        text = f"{total} volume{'' if total == 1 else 's'} ({data} data)"
        if table.row_filter.active:
            text += f" · {table.row_count} match /{table.row_filter.text}"
        if table.marked:
            text += f" · {len(table.marked)} marked"
        return text

    def on_node_event(self, path: str, data: Any) -> None:
        if path == "/vm/deleted":
            self.refresh_volumes()

    def on_operation(self, record: dict[str, Any]) -> None:
        if record.get("apiName") in VOLUME_APIS and record.get("status") != "Running":
            self.refresh_volumes()

    @work(exclusive=True, group="refresh", exit_on_error=False)
    async def refresh_volumes(self) -> None:
        """Read everything again (a volume or snapshot changed somewhere)."""
        await asyncio.sleep(REFRESH_DELAY)
        if self.context.connected:
            await self.read()

    # -- the snapshot panel -------------------------------------------------------

    def snapshots_of(self, volume_uuid: str) -> list[dict[str, Any]]:
        return [s for s in self.snapshots or () if s.get("volumeUuid") == volume_uuid]

    def trees_of(self, volume_uuid: str) -> list[SnapshotNode]:
        return snapshot_trees(self.snapshots_of(volume_uuid))

    @on(ResourceTable.RowHighlighted, "#table")
    def _volume_highlighted(self) -> None:
        self.show_snapshots()

    def filter_applied(self) -> None:
        self.show_snapshots()

    def show_snapshots(self) -> None:
        """The tree and title line of the volume under the cursor."""
        if self.snapshots is None:
            return
        volume = self.table.cursor_row_data
        title = self.query_one("#snap-title", Static)
        self.shown_volume = None if volume is None else str(volume["uuid"])
        if volume is None:
            self.snapshot_tree.show(None, [])
            title.update("No volume.")
            return
        trees = self.trees_of(str(volume["uuid"]))
        self.snapshot_tree.show(volume, trees)
        count = len(self.snapshots_of(str(volume["uuid"])))
        where = f" ({volume['device']} of {volume['vmName']})" if volume.get("device") else ""
        if not count:
            text = f"{volume['name']}{where}: no snapshot · z takes one"
        else:
            text = (
                f"Snapshots of {volume['name']}{where}: {count} · {CURRENT_MARK[0]} where the "
                "volume is · tab to the tree: v reverts to one, D deletes one"
            )
        title.update(Text(text))

    def tree_snapshot(self) -> dict[str, Any] | None:
        """The snapshot under the tree's cursor; None (said) when there is none."""
        uuid = self.snapshot_tree.cursor_snapshot
        found = next((s for s in self.snapshots or () if s.get("uuid") == uuid), None)
        if found is None:
            self.notify(
                "No snapshot chosen: move to one in the snapshot tree (tab).", severity="warning"
            )
        return found

    # -- the volume verbs -----------------------------------------------------------

    def cursor_volume(self) -> Row | None:
        row = self.table.cursor_row_data
        if row is None:
            self.notify("No volume selected.", severity="warning")
        return row

    def action_create(self) -> None:
        """A new data volume, of a size or a disk offering (binding ``ztui.volume.create``)."""
        offerings = [
            (f"{o['name']} ({self.fmt.size(o.get('diskSize'))})", str(o["uuid"]))
            for o in sorted(self.data.offerings, key=lambda o: str(o.get("name")))
        ]

        def answered(params: dict[str, Any] | None) -> None:
            if params is not None:
                self.create_volume(params)

        self.app.push_screen(NewVolumeDialog(offerings), answered)

    @work(group="verbs", exit_on_error=False)
    async def create_volume(self, params: dict[str, Any]) -> None:
        self.status.show_info(f"creating data volume {params['name']}…")
        volume = await self.api_call("CreateDataVolume", params)
        if not isinstance(volume, dict):
            return
        await self.read()
        self.table.select_key(str(volume["uuid"]))
        size = self.fmt.size(volume.get("size"))
        self.status.show_info(f"created data volume {volume['name']} ({size})")

    def action_attach(self) -> None:
        """Attach the data volume under the cursor to a VM chosen in a dialog (binding
        ``ztui.volume.attach``)."""
        volume = self.cursor_volume()
        if volume is None:
            return
        why = _why_not_attachable(volume)
        if why is not None:
            self.notify(why, severity="warning")
            return
        vms = self.data.attachable_vms()
        if not vms:
            self.notify("No VM to attach it to (a running or stopped one).", severity="warning")
            return
        choices = [(f"{v['name']} ({v.get('state')})", str(v["uuid"])) for v in vms]

        def answered(vm_uuid: str | None) -> None:
            if vm_uuid is not None:
                self.attach(volume, vm_uuid)

        dialog = ChoiceDialog(
            f"Attach {volume['name']}",
            "The VM to attach it to (a running VM gets it at once, a stopped one when it starts):",
            choices,
            "Attach",
        )
        self.app.push_screen(dialog, answered)

    @work(group="verbs", exit_on_error=False)
    async def attach(self, volume: Row, vm_uuid: str) -> None:
        vm_name = self.data.vm_name(vm_uuid)
        self.status.show_info(f"attaching {volume['name']} to {vm_name}…")
        params = {"volumeUuid": volume["uuid"], "vmInstanceUuid": vm_uuid}
        attached = await self.api_call("AttachDataVolumeToVm", params)
        if attached is None:
            return
        await self.read()
        row = self.table.rows_by_key.get(str(volume["uuid"]), {})
        device = f" as {row['device']}" if row.get("device") else ""
        self.status.show_info(f"attached {volume['name']} to {vm_name}{device}")

    def action_detach(self) -> None:
        """Detach the data volume under the cursor from its VM (binding
        ``ztui.volume.detach``)."""
        volume = self.cursor_volume()
        if volume is None:
            return
        if volume.get("type") != DATA or not volume.get("vmInstanceUuid"):
            self.notify(f"{volume['name']} is not an attached data volume.", severity="warning")
            return
        self.detach(volume)

    @work(group="verbs", exit_on_error=False)
    async def detach(self, volume: Row) -> None:
        vm_name = volume.get("vmName")
        self.status.show_info(f"detaching {volume['name']} from {vm_name}…")
        params = {"uuid": volume["uuid"], "vmUuid": volume["vmInstanceUuid"]}
        if await self.api_call("DetachDataVolumeFromVm", params) is None:
            return
        await self.read()
        self.status.show_info(f"detached {volume['name']} from {vm_name}")

    def action_volume_verb(self, name: str) -> None:
        """Delete, recover or expunge the marked data volumes, or the one under the cursor
        (bindings ``ztui.volume.delete`` / ``.recover`` / ``.expunge``); those it does not
        apply to are left."""
        selected = self.table.selection()
        rows = [r for r in selected if _applies(name, r)]
        if not rows:
            what = ", ".join(f"{r['name']} is {_state_words(r)}" for r in selected)
            self.notify(f"Nothing to {name}{': ' + what if what else ''}.", severity="warning")
            return
        if name == "recover":
            self.run_volume_verb(name, rows)
            return
        names = [str(r["name"]) for r in rows]
        text = question(name.capitalize(), VOLUME_NOUN, names, WARNINGS[name])

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_volume_verb(name, rows)

        self.app.push_screen(ConfirmDialog(text, name.capitalize()), answered)

    @work(group="verbs", exit_on_error=False)
    async def run_volume_verb(self, name: str, rows: Sequence[Row]) -> None:
        """One after the other; the first refusal stops the rest."""
        self.table.clear_marks()
        api = VOLUME_VERB_APIS[name]
        done = []
        for row in rows:
            if not await self.api_ok(api, {"uuid": row["uuid"]}, str(row["name"])):
                break
            done.append(str(row["name"]))
        refusal = self.status.text if len(done) < len(rows) else None
        if done:
            await self.read()
        if refusal is not None:
            self.status.show_error(refusal)
        else:
            self.status.show_info(f"{', '.join(done)} {VOLUME_VERB_PAST[name]}")

    def action_grow(self) -> None:
        """Grow the volume under the cursor to a size asked in a dialog (binding
        ``ztui.volume.grow``)."""
        volume = self.cursor_volume()
        if volume is None:
            return
        if volume.get("status") == DELETED:
            self.notify(f"{volume['name']} is Deleted: recover it first (R).", severity="warning")
            return

        def answered(size: int | None) -> None:
            if size is not None:
                self.grow(volume, size)

        dialog = SizeDialog(str(volume["name"]), int(volume.get("size") or 0))
        self.app.push_screen(dialog, answered)

    @work(group="verbs", exit_on_error=False)
    async def grow(self, volume: Row, size: int) -> None:
        api = "ResizeDataVolume" if volume.get("type") == DATA else "ResizeRootVolume"
        self.status.show_info(f"growing {volume['name']} to {self.fmt.size(size)}…")
        if await self.api_call(api, {"uuid": volume["uuid"], "size": size}) is None:
            return
        await self.read()
        self.status.show_info(f"grew {volume['name']} to {self.fmt.size(size)}")

    # -- the snapshot verbs ---------------------------------------------------------

    def action_snapshot(self) -> None:
        """Take a snapshot of the volume under the cursor, named in a dialog (binding
        ``ztui.volume.snapshot.create``)."""
        volume = self.cursor_volume()
        if volume is None:
            return
        count = len(self.snapshots_of(str(volume["uuid"])))
        live = " (live: its VM runs)" if volume.get("vmInstanceUuid") else ""

        def answered(name: str | None) -> None:
            if name is not None:
                self.take_snapshot(volume, name)

        dialog = NameDialog(
            f"Snapshot of {volume['name']}",
            f"Freezes what the volume holds now{live}; the volume goes on from there.",
            f"{volume['name']}-snap-{count + 1}",
            "Snapshot",
        )
        self.app.push_screen(dialog, answered)

    @work(group="verbs", exit_on_error=False)
    async def take_snapshot(self, volume: Row, name: str) -> None:
        self.status.show_info(f"taking snapshot {name} of {volume['name']}…")
        params = {"volumeUuid": volume["uuid"], "name": name}
        if await self.api_call("CreateVolumeSnapshot", params) is None:
            return
        await self.read()
        self.status.show_info(f"took snapshot {name} of {volume['name']}")

    def action_revert(self) -> None:
        """Revert the volume to the snapshot under the tree's cursor, after a question
        (binding ``ztui.volume.snapshot.revert``)."""
        snapshot = self.tree_snapshot()
        if snapshot is None:
            return
        volume = self.volume_of(snapshot)
        text = f"Revert volume {volume} to snapshot {snapshot['name']}?\n{REVERT_WARNING}"

        def answered(yes: bool | None) -> None:
            if yes:
                self.revert(snapshot, volume)

        self.app.push_screen(ConfirmDialog(text, "Revert"), answered)

    @work(group="verbs", exit_on_error=False)
    async def revert(self, snapshot: Row, volume: str) -> None:
        self.status.show_info(f"reverting {volume} to {snapshot['name']}…")
        if not await self.api_ok("RevertVolumeFromSnapshot", {"uuid": snapshot["uuid"]}, volume):
            return
        await self.read()
        self.status.show_info(f"reverted {volume} to snapshot {snapshot['name']}")

    def action_delete_snapshot(self) -> None:
        """Delete the snapshot under the tree's cursor, after a question (binding
        ``ztui.volume.snapshot.delete``)."""
        snapshot = self.tree_snapshot()
        if snapshot is None:
            return
        volume = self.volume_of(snapshot)
        text = (
            question("Delete", SNAPSHOT_NOUN, [f"{snapshot['name']} of {volume}"], None)
            + f"\n{DELETE_SNAPSHOT_WARNING}"
        )

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_snapshot(snapshot, volume)

        self.app.push_screen(ConfirmDialog(text, "Delete"), answered)

    @work(group="verbs", exit_on_error=False)
    async def delete_snapshot(self, snapshot: Row, volume: str) -> None:
        self.status.show_info(f"deleting snapshot {snapshot['name']} of {volume}…")
        if not await self.api_ok("DeleteVolumeSnapshot", {"uuid": snapshot["uuid"]}, volume):
            return
        await self.read()
        self.status.show_info(f"deleted snapshot {snapshot['name']} of {volume}")

    def volume_of(self, snapshot: Row) -> str:
        """The name of a snapshot's volume."""
        volume = next(
            (v for v in self.data.volumes if v.get("uuid") == snapshot.get("volumeUuid")), None
        )
        return str(volume.get("name")) if volume else "?"


VOLUME_VERB_APIS = {
    "delete": "DeleteDataVolume",
    "recover": "RecoverDataVolume",
    "expunge": "ExpungeDataVolume",
}
VOLUME_VERB_PAST = {"delete": "deleted", "recover": "recovered", "expunge": "expunged"}


def _applies(verb: str, row: Row) -> bool:
    """Whether a volume verb applies to the volume: data volumes only; delete a live one,
    recover and expunge a Deleted one."""
    if row.get("type") != DATA:
        return False
    deleted = row.get("status") == DELETED
    return not deleted if verb == "delete" else deleted


def _state_words(row: Row) -> str:
    """``a root volume``, ``Deleted``, ``Ready``: what a volume is, for a refusal."""
    if row.get("type") != DATA:
        return "a root volume"
    return str(row.get("status"))


def _why_not_attachable(volume: Row) -> str | None:
    if volume.get("type") != DATA:
        return f"{volume['name']} is a root volume: only data volumes are attached."
    if volume.get("status") == DELETED:
        return f"{volume['name']} is Deleted: recover it first (R)."
    if volume.get("vmInstanceUuid"):
        return f"{volume['name']} is attached to {volume.get('vmName')} already: detach it (x)."
    return None
