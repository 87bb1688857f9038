"""The import-image dialog: name, URL or path, format, backup storage, platform, checksum.

The form is checked as AddImage checks its parameters (the message's own
``from_params``), so a bad form never reaches the node.  Then the dialog asks
the view to start the import and waits a moment: a refusal that comes at once
(a file that does not exist, an HTTP 404, a storage that cannot take images)
is shown here, in the dialog, so the user can fix the form; a download that
goes on is left to the view's progress bars.

A path may be relative (to the directory ztui was started in) or start with ``~``:
it is made absolute before it is checked and sent, since the node resolves nothing.
The path field completes directory entries as one types (right arrow takes it).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Input, Label, Select

from core.image.api import PLATFORMS, AddImage
from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode, OperationError
from ztui.context import context_of

FORMATS = ("qcow2", "raw")
"""The formats of a root volume template (an ISO is not imported from here)."""
ACCEPT_WAIT = 2.0
"""Seconds the dialog waits for AddImage to fail at once before leaving it to the view."""


@dataclass(frozen=True)
class ImportRequest:
    """One AddImage call."""

    name: str
    url: str
    format: str | None = None
    """None: whatever qemu-img finds (qcow2 or raw)."""
    backup_storage_uuids: list[str] = field(default_factory=list)
    """Empty: every backup storage."""
    platform: str = "Linux"
    checksum: str = ""

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"name": self.name, "url": self.url, "platform": self.platform}
        if self.format:
            params["format"] = self.format
        if self.backup_storage_uuids:
            params["backupStorageUuids"] = list(self.backup_storage_uuids)
        if self.checksum:
            params["checksum"] = self.checksum
        return params


@dataclass
class ImportJob:
    """A running import: the view runs the call, the dialog may wait on its outcome."""

    request: ImportRequest
    reply: ApiReply | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    dialog_open: bool = True
    """While True the dialog shows a failure; once it is closed the view does."""

    def finish(self, reply: ApiReply) -> None:
        self.reply = reply
        self.finished.set()


StartImport = Callable[[ImportRequest], ImportJob]


def is_url(text: str) -> bool:
    return "://" in text


def resolve_path(text: str, base: Path) -> str:
    """A local path made absolute against ``base`` (``~`` expanded); a URL, an absolute
    path and an empty field are left as they are."""
    if not text or is_url(text) or text.startswith("/"):
        return text
    path = Path(text).expanduser()
    return str(path if path.is_absolute() else base / path)


class PathSuggester(Suggester):
    """Completes the last part of a local path with the first directory entry it starts
    (a directory with a ``/``), relative paths against ``base``; hidden entries only when
    the part starts with a dot."""

    def __init__(self, base: Path) -> None:
        super().__init__(use_cache=False, case_sensitive=True)
        self.base = base

    async def get_suggestion(self, value: str) -> str | None:
        if not value or is_url(value):
            return None
        head, _, part = value.rpartition("/")
        folder = Path(resolve_path(head + "/" if head or value.startswith("/") else ".", self.base))
        try:
            names = sorted(
                entry.name + ("/" if entry.is_dir() else "")
                for entry in os.scandir(folder)
                if entry.name.startswith(part) and (part.startswith(".") or entry.name[0] != ".")
            )
        except OSError:
            return None
        for name in names:
            if name != part:
                return value[: len(value) - len(part)] + name
        return None


def check_request(request: ImportRequest) -> str | None:
    """Why AddImage would refuse these parameters (its own words), or None."""
    try:
        AddImage.from_params(request.params())
    except OperationError as exc:
        return exc.error.description
    return None


def describe_error(error: ErrorCode | None) -> str:
    """An error and its causes, one line each, for a dialog (the codes left out)."""
    if error is None:
        return "failed"
    lines = []
    for depth, err in enumerate(error.causes()):
        text = err.description + (f" ({err.details})" if err.details else "")
        lines.append(("caused by: " if depth else "") + text)
    return "\n".join(lines)


class ImportImageDialog(ModalScreen[ImportJob | None]):
    """Dismissed with the running (or finished) :class:`ImportJob`, or None when cancelled."""

    DEFAULT_CSS = """
    ImportImageDialog {
        align: center middle;
    }
    ImportImageDialog > VerticalScroll {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        border-title-align: left;
        background: $surface;
        padding: 0 1;
    }
    ImportImageDialog Grid {
        grid-size: 2;
        grid-columns: 16 1fr;
        grid-rows: 1;
        grid-gutter: 0 0;
        height: auto;
        margin-top: 1;
    }
    ImportImageDialog #hint {
        color: $text-muted;
        margin-top: 1;
    }
    ImportImageDialog #error {
        width: 100%;
        color: $text-error;
        margin-top: 1;
    }
    ImportImageDialog #buttons {
        height: auto;
        align-horizontal: right;
        margin-top: 1;
    }
    ImportImageDialog #buttons Button {
        margin-left: 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.import-image.cancel"),
        Binding("ctrl+s", "submit", "Import", id="ztui.import-image.submit"),
    ]

    def __init__(self, start: StartImport, base: Path | None = None) -> None:
        """``base``: where relative paths start (the directory ztui was started in)."""
        super().__init__()
        self.start = start
        self.base = base or Path.cwd()
        self.loaded = False
        """True once the backup storages are in the form (tests wait on it)."""
        self.job: ImportJob | None = None
        """The import this dialog started and waits on (None before Import is pressed)."""

    def compose(self) -> ComposeResult:
        with VerticalScroll() as box:
            box.border_title = "Import an image"
            with Grid():
                yield Label("Name")
                yield Input(placeholder="debian-12", id="name", compact=True)
                yield Label("URL or path")
                yield Input(
                    placeholder="https://host/disk.qcow2 or a path (→ completes)",
                    id="url",
                    compact=True,
                    suggester=PathSuggester(self.base),
                )
                yield Label("Format")
                yield Select[str](
                    [(f, f) for f in FORMATS], prompt="detect", id="format", compact=True
                )
                yield Label("Backup storage")
                yield Select[str]([], prompt="loading…", id="storage", compact=True)
                yield Label("Platform")
                yield Select[str](
                    [(p, p) for p in PLATFORMS],
                    value="Linux",
                    allow_blank=False,
                    id="platform",
                    compact=True,
                )
                yield Label("Checksum")
                yield Input(placeholder="sha256:… or md5:… (optional)", id="checksum", compact=True)
            yield Label("qcow2 or raw, over http(s) or from a file on this machine", id="hint")
            yield Label("", id="error")
            with Horizontal(id="buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Import", variant="primary", id="import")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self._load_storages()

    @work(exclusive=True, group="choices", exit_on_error=False)
    async def _load_storages(self) -> None:
        session = context_of(self.app).session
        reply = await session.call("QueryBackupStorage", {"limit": 10000})
        storages = sorted(reply.inventories or [], key=lambda s: str(s.get("name")))
        select = self.query_one("#storage", Select)
        select.set_options([(str(s["name"]), str(s["uuid"])) for s in storages])
        if not reply.success:
            select.prompt = "cannot list backup storage"
            self._show_error(describe_error(reply.error))
        elif not storages:
            select.prompt = "none: add a backup storage first"
        elif len(storages) == 1:
            select.value = str(storages[0]["uuid"])
        else:
            select.prompt = "every backup storage"
        self.loaded = True

    def request(self) -> ImportRequest:
        """What the form says, as it stands."""
        fmt = self.query_one("#format", Select).value
        storage = self.query_one("#storage", Select).value
        platform = self.query_one("#platform", Select).value
        return ImportRequest(
            name=self.query_one("#name", Input).value.strip(),
            url=resolve_path(self.query_one("#url", Input).value.strip(), self.base),
            format=fmt if isinstance(fmt, str) else None,
            backup_storage_uuids=[storage] if isinstance(storage, str) else [],
            platform=platform if isinstance(platform, str) else "Linux",
            checksum=self.query_one("#checksum", Input).value.strip(),
        )

    @property
    def error_text(self) -> str:
        return str(self.query_one("#error", Label).content)

    def _show_error(self, text: str) -> None:
        self.query_one("#error", Label).update(text)

    def action_submit(self) -> None:
        """Check the form, then start the import (binding ``ztui.import-image.submit``)."""
        if self.job is not None and not self.job.finished.is_set():
            return  # already importing: wait for the outcome
        request = self.request()
        problem = check_request(request)
        if problem is not None:
            self._show_error(problem)
            return
        self._show_error("")
        self.job = self.start(request)
        self._await_outcome(self.job)

    @work(exclusive=True, group="import", exit_on_error=False)
    async def _await_outcome(self, job: ImportJob) -> None:
        """Keep the dialog open while the import may still be refused at once."""
        button = self.query_one("#import", Button)
        button.disabled = True
        button.label = "Importing…"
        try:
            await asyncio.wait_for(job.finished.wait(), ACCEPT_WAIT)
        except TimeoutError:
            self._close(job)  # a download under way: the view shows its progress
            return
        finally:
            button.disabled = False
            button.label = "Import"
        if job.reply is not None and job.reply.success:
            self._close(job)
        else:
            self._show_error(describe_error(job.reply.error if job.reply else None))

    def _close(self, job: ImportJob | None) -> None:
        if self.job is not None:
            self.job.dialog_open = False
        self.dismiss(job)

    def action_cancel(self) -> None:
        """Close the dialog; an import it started goes on (binding ``ztui.import-image.cancel``)."""
        running = self.job if self.job is not None and not self.job.finished.is_set() else None
        self._close(running)

    @on(Button.Pressed, "#import")
    def _import(self) -> None:
        self.action_submit()

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.action_cancel()

    @on(Input.Submitted)
    def _enter(self) -> None:
        self.action_submit()
