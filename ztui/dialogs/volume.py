"""The dialogs of the volume verbs: a new data volume (name, a size like ``10G`` or a
disk offering), a volume's new (larger) size, a name for what a verb makes (a snapshot, an
image), and a choice among a few things (the VM to attach a volume to).

Each is dismissed with what to send, or None when cancelled; the view calls the APIs.
"""

from __future__ import annotations

from typing import Any, ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Input, Label, Select

from ztui.dialogs.choice import Choice
from ztui.dialogs.form import FormDialog
from ztui.formatting import Formatter
from ztui.volumes import parse_size


class VolumeDialog(FormDialog[Any]):
    """What the volume dialogs share: their keys, title, explanation and buttons."""

    DEFAULT_CSS = """
    VolumeDialog > VerticalScroll {
        width: 64;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.volume-dialog.cancel"),
        Binding("ctrl+s", "submit", "OK", id="ztui.volume-dialog.submit"),
    ]

    binding_group = "ztui.volume-dialog"

    @property
    def error_text(self) -> str:
        return str(self.query_one("#error", Label).content)


def check_new_volume(name: str, size_text: str, offering: str | None) -> dict[str, Any] | str:
    """CreateDataVolume's parameters, or why the form cannot be sent: a name, and a size
    or a disk offering (not both)."""
    name = name.strip()
    if not name:
        return "name: required"
    if offering is not None and size_text.strip():
        return "size: give a size or choose a disk offering, not both"
    if offering is not None:
        return {"name": name, "diskOfferingUuid": offering}
    size = parse_size(size_text)
    if size is None:
        return "size: like 10G or 512M (or choose a disk offering)"
    return {"name": name, "diskSize": size}


class NewVolumeDialog(VolumeDialog):
    """Dismissed with CreateDataVolume's parameters."""

    form_title = "New data volume"
    verb = "Create"
    what = "An empty disk on primary storage; attach it to a VM to use it."

    def __init__(self, offerings: list[Choice]) -> None:
        """``offerings``: the disk offerings, as (label, uuid)."""
        super().__init__()
        self.offerings = offerings

    def fields(self) -> ComposeResult:
        yield Label("Name")
        yield Input("", id="name", max_length=255)
        yield Label("Size (10G, 512M…)")
        yield Input("", id="size", max_length=16, placeholder="10G")
        yield Label("or disk offering")
        yield Select[str](
            self.offerings,
            prompt="(none: the size above)" if self.offerings else "(no disk offering)",
            id="offering",
        )

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def action_submit(self) -> None:
        offering = self.query_one("#offering", Select).value
        found = check_new_volume(
            self.query_one("#name", Input).value,
            self.query_one("#size", Input).value,
            None if offering is Select.NULL else str(offering),
        )
        if isinstance(found, str):
            self.problem(found)
            return
        self.dismiss(found)


def check_new_size(text: str, current: int) -> int | str:
    """The new size in bytes, or why it cannot be sent (a volume only grows)."""
    size = parse_size(text)
    if size is None:
        return "size: like 20G or 1.5T"
    if size <= current:
        return f"size: larger than now ({_size_text(current)}): a volume only grows"
    return size


def _size_text(size: int) -> str:
    return Formatter().size(size)


class SizeDialog(VolumeDialog):
    """A volume's new size: dismissed with it in bytes."""

    verb = "Grow"

    def __init__(self, name: str, current: int) -> None:
        super().__init__()
        self.current = current
        self.form_title = f"Grow {name}"
        self.what = (
            f"Now {_size_text(current)}. The disk grows (live if its VM runs); the guest's "
            "partitions and file systems are its own to grow."
        )

    def fields(self) -> ComposeResult:
        yield Label("New size (20G, 1.5T…)")
        yield Input("", id="size", max_length=16, placeholder=_size_text(self.current * 2))

    def on_mount(self) -> None:
        self.query_one("#size", Input).focus()

    def action_submit(self) -> None:
        found = check_new_size(self.query_one("#size", Input).value, self.current)
        if isinstance(found, str):
            self.problem(found)
            return
        self.dismiss(found)


class NameDialog(VolumeDialog):
    """A name for what a verb makes (a snapshot, an image): dismissed with it."""

    def __init__(self, title: str, what: str, name: str, verb: str) -> None:
        super().__init__()
        self.form_title, self.what, self.default_name, self.verb = title, what, name, verb

    def fields(self) -> ComposeResult:
        yield Label("Name")
        yield Input(self.default_name, id="name", max_length=255)

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    def action_submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        if not name:
            self.problem("name: required")
            return
        self.dismiss(name)
