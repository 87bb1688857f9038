"""The images view: every image with its status in colour, format, sizes and age; imports
from a file or an http(s) URL with a progress bar per download (from the
``/image/download/progress`` events, which an image made from a volume reports too: it
gets its bar while Creating); delete, recover and expunge where they apply.

A download started elsewhere (``zcli``, another ztui) gets its bar too: its row
is fetched when its first progress report arrives, and the images still
Downloading are looked at every few seconds, since no event says an image
became Ready or was rolled back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.widgets import Label, ProgressBar
from textual.worker import Worker

from ztui.columns import Column, Kind
from ztui.dialogs.confirm import ConfirmDialog, Wording, question
from ztui.dialogs.import_image import ImportImageDialog, ImportJob, ImportRequest
from ztui.screens.base import ResourceScreen
from ztui.widgets.resource_table import ResourceTable

Row = Mapping[str, Any]

PROGRESS_EVENT = "/image/download/progress"
DOWNLOADING, CREATING, READY, DELETED = "Downloading", "Creating", "Ready", "Deleted"
IN_PROGRESS = frozenset({DOWNLOADING, CREATING})
"""The statuses of an image being made: downloaded (AddImage) or exported from a volume
(CreateRootVolumeTemplateFromRootVolume…), each with a bar from its progress reports."""
WATCH_INTERVAL = 2.0
"""Seconds between two looks at the images still Downloading."""

IMAGE_COLUMNS = (
    Column("name", "name"),
    Column("status", "status", Kind.STATE),
    Column("state", "state", Kind.STATE),
    Column("format", "format"),
    Column("size", "size", Kind.SIZE),
    Column("actualSize", "actual", Kind.SIZE),
    Column("platform", "platform"),
    Column("createDate", "age", Kind.AGE),
)


def image_row(inventory: Row) -> Row:
    """An image inventory as the table shows it: no sizes until it is downloaded."""
    if inventory.get("status") in IN_PROGRESS:
        return {**inventory, "size": None, "actualSize": None}
    return inventory


@dataclass(frozen=True)
class Verb:
    """A one-key operation on the selected images, for images in one of ``statuses``."""

    api: str
    past: str
    statuses: frozenset[str]
    confirm: bool = False


VERBS: dict[str, Verb] = {
    "delete": Verb("DeleteImage", "deleted", frozenset({READY}), confirm=True),
    "recover": Verb("RecoverImage", "recovered", frozenset({DELETED})),
    "expunge": Verb("ExpungeImage", "expunged", frozenset({DELETED}), confirm=True),
}
IMAGE_NOUN = Wording("image", "images")
IMAGE_WARNINGS = {
    "delete": Wording(
        "(image.deletionPolicy decides whether it can be recovered.)",
        "(image.deletionPolicy decides whether they can be recovered.)",
    ),
    "expunge": Wording(
        "Its files on backup storage are deleted for good.",
        "Their files on backup storage are deleted for good.",
    ),
}
"""What the confirmation of a verb adds (for one image, for several)."""


@dataclass
class Download:
    """One image being downloaded: what its progress reports said, and its line in the
    downloads panel (name, bar, bytes)."""

    name_label: Label
    bar: ProgressBar
    bytes_label: Label
    line: Horizontal
    reports: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Backup storage uuid -> (bytes done, total bytes; 0 when unknown)."""

    @property
    def progress(self) -> int:
        return sum(done for done, _ in self.reports.values())

    @property
    def total(self) -> int | None:
        """None while any copy's size is unknown (the bar is then indeterminate)."""
        totals = [total for _, total in self.reports.values()]
        return sum(totals) if totals and all(totals) else None


class ImagesScreen(ResourceScreen):
    VIEW = "images"
    COLUMNS = IMAGE_COLUMNS
    MARKABLE = True
    MUTATING = frozenset({"import_image", "verb"})

    DEFAULT_CSS = """
    ImagesScreen #downloads {
        height: auto;
        max-height: 6;
        display: none;
        padding: 0 1;
        border-top: solid $primary;
    }
    ImagesScreen #downloads.-shown {
        display: block;
    }
    ImagesScreen .download {
        height: 1;
    }
    ImagesScreen .download-name {
        width: 24;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    ImagesScreen .download-bytes {
        margin-left: 1;
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("i", "import_image", "Import", id="ztui.image.import"),
        Binding("d", "verb('delete')", "Delete", id="ztui.image.delete"),
        Binding("R", "verb('recover')", "Recover", id="ztui.image.recover"),
        Binding("E", "verb('expunge')", "Expunge", id="ztui.image.expunge"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.downloads: dict[str, Download] = {}
        """The images being downloaded, by uuid (each has a bar in the downloads panel)."""
        self._watcher: Worker[None] | None = None

    def compose_body(self) -> ComposeResult:
        yield from super().compose_body()
        yield Vertical(id="downloads")

    # -- loading ------------------------------------------------------------------

    async def load(self) -> None:
        images = await self.api_query("QueryImage", {"sortBy": "createDate"})
        self.table.show([image_row(i) for i in images])
        self._sync_downloads(images)
        self.status.show_info(self.summary())
        self.refresh_bindings()

    def _sync_downloads(self, images: Iterable[Row]) -> None:
        """A bar for each Downloading image; none for the others."""
        downloading = {str(i["uuid"]): i for i in images if i.get("status") in IN_PROGRESS}
        for uuid in list(self.downloads):
            if uuid not in downloading:
                self._drop_download(uuid)
        for uuid, image in downloading.items():
            self._download(uuid, str(image.get("name", "")))

    # -- progress -----------------------------------------------------------------

    def on_node_event(self, path: str, data: Any) -> None:
        if path != PROGRESS_EVENT or not isinstance(data, dict) or not data.get("imageUuid"):
            return
        uuid = str(data["imageUuid"])
        row = self.table.rows_by_key.get(uuid)
        if row is not None and row.get("status") not in IN_PROGRESS:
            return  # a late report of a download that has ended
        download = self._download(uuid, str(row["name"]) if row else "")
        storage = str(data.get("backupStorageUuid", ""))
        download.reports[storage] = (_count(data.get("progress")), _count(data.get("total")))
        self._show_progress(uuid)
        if row is None:
            self._fetch_images([uuid])

    def _download(self, uuid: str, name: str) -> Download:
        """The download of image ``uuid``, with its line in the panel (added if new)."""
        download = self.downloads.get(uuid)
        if download is None:
            name_label = Label(name or "…", classes="download-name")
            bar = ProgressBar(total=None, show_eta=False)
            bytes_label = Label("", classes="download-bytes")
            line = Horizontal(name_label, bar, bytes_label, classes="download")
            download = self.downloads[uuid] = Download(name_label, bar, bytes_label, line)
            self.panel.mount(line)
            self.panel.add_class("-shown")
            self._watch()
        elif name:
            download.name_label.update(name)
        return download

    def _show_progress(self, uuid: str) -> None:
        download = self.downloads[uuid]
        total = download.total
        download.bar.update(total=total, progress=download.progress)
        done = self.fmt.size(download.progress)
        download.bytes_label.update(f"{done} / {self.fmt.size(total)}" if total else done)

    def _drop_download(self, uuid: str) -> None:
        download = self.downloads.pop(uuid, None)
        if download is None:
            return
        download.line.remove()
        if not self.downloads:
            self.panel.remove_class("-shown")

    @property
    def panel(self) -> Vertical:
        return self.query_one("#downloads", Vertical)

    def _watch(self) -> None:
        if self._watcher is None or self._watcher.is_finished:
            self._watcher = self._watch_downloads()

    @work(group="watch", exit_on_error=False)
    async def _watch_downloads(self) -> None:
        """While images download, look at them now and then: no event says they ended."""
        while self.downloads:
            await asyncio.sleep(WATCH_INTERVAL)
            if self.downloads:
                await self._refresh_images(list(self.downloads))

    @work(group="fetch", exit_on_error=False)
    async def _fetch_images(self, uuids: list[str]) -> None:
        await self._refresh_images(uuids)

    async def _refresh_images(self, uuids: list[str]) -> None:
        """Query these images again: update their rows, drop the rows of those gone."""
        found = await self.api_query("QueryImage", {"conditions": [f"uuid?={','.join(uuids)}"]})
        by_uuid = {str(i["uuid"]): i for i in found}
        for uuid in uuids:
            image = by_uuid.get(uuid)
            if image is None:
                self.table.remove(uuid)
                self._drop_download(uuid)
            else:
                self.apply_image(image)
        self.status.show_info(self.summary())
        self.refresh_bindings()

    def apply_image(self, image: Row) -> None:
        """Show one image's new inventory (its row, and its bar while it downloads)."""
        uuid = str(image["uuid"])
        self.table.upsert(image_row(image))
        if image.get("status") in IN_PROGRESS:
            self._download(uuid, str(image.get("name", "")))
        else:
            self._drop_download(uuid)

    # -- import -------------------------------------------------------------------

    def action_import_image(self) -> None:
        """Open the import dialog (binding ``ztui.image.import``)."""
        self.app.push_screen(ImportImageDialog(self.start_import))

    def start_import(self, request: ImportRequest) -> ImportJob:
        """Run AddImage in the background; the dialog may wait on the job."""
        job = ImportJob(request)
        self._run_import(job)
        return job

    @work(group="imports", exit_on_error=False)
    async def _run_import(self, job: ImportJob) -> None:
        name = job.request.name
        self.status.show_info(f"importing {name}…")
        reply = await self.session.call("AddImage", job.request.params())
        job.finish(reply)
        if reply.success and reply.inventory is not None:
            self.apply_image(reply.inventory)
            self.status.show_info(f"imported {name}")
            self.refresh_bindings()
            return
        if self.downloads:  # its image was rolled back: drop its bar and row now
            await self._refresh_images(list(self.downloads))
        text = f"AddImage {name}: {reply.error}"
        self.status.show_error(text)
        if not job.dialog_open:  # else the dialog shows it
            self.notify(text, title="API error", severity="error")

    # -- verbs --------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        allowed = super().check_action(action, parameters)
        if allowed is not True or action != "verb" or not parameters:
            return allowed
        verb = VERBS.get(str(parameters[0]))
        if verb is None or not self.is_mounted:
            return allowed
        rows = self.table.selection()
        return True if any(r.get("status") in verb.statuses for r in rows) else None

    def disabled_reason(self, action: str, parameters: tuple[object, ...]) -> str:
        if self.context.read_only or action != "verb" or not parameters:
            return super().disabled_reason(action, parameters)
        return self.nothing_to(str(parameters[0]), self.table.selection())

    @staticmethod
    def nothing_to(name: str, selected: Iterable[Row]) -> str:
        """``Nothing to expunge: base is Ready.`` (no selected image's status allows it)."""
        what = ", ".join(f"{r['name']} is {r.get('status')}" for r in selected)
        return f"Nothing to {name}{': ' + what if what else ''}."

    @on(ResourceTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self.refresh_bindings()  # which verbs apply depends on the row

    def action_verb(self, name: str) -> None:
        """Delete, recover or expunge the marked images, or the one under the cursor
        (bindings ``ztui.image.*``); the images whose status does not allow it are left."""
        verb = VERBS[name]
        selected = self.table.selection()
        rows = [r for r in selected if r.get("status") in verb.statuses]
        if not rows:
            self.notify(self.nothing_to(name, selected), severity="warning")
            return
        if not verb.confirm:
            self.run_verb(verb, rows)
            return
        names = [str(r["name"]) for r in rows]
        text = question(name.capitalize(), IMAGE_NOUN, names, IMAGE_WARNINGS.get(name))

        def answered(yes: bool | None) -> None:
            if yes:
                self.run_verb(verb, rows)

        self.app.push_screen(ConfirmDialog(text, name.capitalize()), answered)

    @work(group="verbs", exit_on_error=False)
    async def run_verb(self, verb: Verb, rows: list[Row]) -> None:
        self.table.clear_marks()
        calls = [self.session.call(verb.api, {"uuid": r["uuid"]}) for r in rows]
        replies = await asyncio.gather(*calls)
        failed = [
            f"{r['name']}: {reply.error}"
            for r, reply in zip(rows, replies, strict=True)
            if not reply.success
        ]
        await self._refresh_images([str(r["uuid"]) for r in rows])
        if failed:
            text = f"{verb.api} " + "; ".join(failed)
            self.status.show_error(text)
            self.notify(text, title="API error", severity="error")
        else:
            self.status.show_info(f"{', '.join(str(r['name']) for r in rows)} {verb.past}")


def _count(value: Any) -> int:
    """A byte count from a progress report (anything else is 0)."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
