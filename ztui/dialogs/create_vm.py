"""The create-VM dialog: name, image (with the size of the root disk it gives), offering,
networks, data disks (a disk offering each), how many, and a user-data file.

Its border says what it is and which keys create and cancel (as the keymap has them);
a network without DHCP says the address must be configured in the guest, and the
network checkboxes show ``X`` or nothing, so they read without colour too.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from rich.segment import Segment
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.strip import Strip
from textual.widgets import Button, Input, Label, Select, SelectionList

from ztui.addressing import SERVICE_REFS, Services, network_label
from ztui.context import ZtuiContext, context_of
from ztui.dialogs.form import FormDialog
from ztui.formatting import Formatter

MAX_COUNT = 50
TITLE = "New VM"
CHECKED, UNCHECKED = "X", " "
"""What a network's box holds: readable without colour (Textual draws X in both)."""


@dataclass(frozen=True)
class VmRequest:
    """What the dialog asks for: one CreateVmInstance per name."""

    names: list[str]
    image_uuid: str
    instance_offering_uuid: str
    l3_network_uuids: list[str] = field(default_factory=list)
    user_data: str = ""
    """base64 of the user-data file, "" for none (the userdata plugin's ``userData``)."""
    data_disk_offering_uuids: list[str] = field(default_factory=list)
    """A data volume of each disk offering, attached as vdb, vdc… in this order."""

    def params(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            "imageUuid": self.image_uuid,
            "instanceOfferingUuid": self.instance_offering_uuid,
            "l3NetworkUuids": self.l3_network_uuids,
            **({"userData": self.user_data} if self.user_data else {}),
            **(
                {"dataDiskOfferingUuids": self.data_disk_offering_uuids}
                if self.data_disk_offering_uuids
                else {}
            ),
        }


USER_DATA_MAX = 64 * 1024
"""The most of a user-data file the dialog reads (the node's ``userdata.maxSize`` default;
the node checks its own setting)."""


def read_user_data(path_text: str) -> tuple[str, str | None]:
    """(base64 of the file, None), or ("", why it cannot be sent); "" for no path."""
    if not path_text.strip():
        return "", None
    path = Path(path_text.strip()).expanduser()
    try:
        with path.open("rb") as f:
            content = f.read(USER_DATA_MAX + 1)
    except FileNotFoundError:
        return "", f"user data: there is no file {path}"
    except IsADirectoryError:
        return "", f"user data: {path} is a directory"
    except OSError as exc:
        return "", f"user data: cannot read {path}: {exc.strerror or exc}"
    if len(content) > USER_DATA_MAX:
        return "", f"user data: {path} is over {USER_DATA_MAX // 1024} KiB"
    if not content:
        return "", f"user data: {path} is empty"
    return base64.b64encode(content).decode(), None


def spelled(keys: str) -> str:
    """Keys as a newcomer reads them: ``^s`` is ``ctrl+s``."""
    return re.sub(r"(?<!\S)\^(?=\S)", "ctrl+", keys)


def names_for(name: str, count: int) -> list[str]:
    """``web`` x1 is ``web``; x3 is ``web-1``, ``web-2``, ``web-3``."""
    return [name] if count == 1 else [f"{name}-{i}" for i in range(1, count + 1)]


def check_form(name: str, count_text: str, image: Any, offering: Any) -> str | None:
    """Why the form cannot be sent, or None."""
    if not name.strip():
        return "name: give the VM a name"
    if len(name) > 255:
        return "name: at most 255 characters"
    if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_COUNT:
        return f"count: a whole number from 1 to {MAX_COUNT}"
    if not isinstance(image, str):
        return "image: choose an image (import one in :image)"
    if not isinstance(offering, str):
        return "offering: choose an instance offering"
    return None


class NetworkList(SelectionList[str]):
    """A SelectionList whose boxes show ``X`` when marked and nothing when not."""

    def render_line(self, y: int) -> Strip:
        line = super().render_line(y)
        segments = list(line)
        index = self.scroll_offset.y + y
        if len(segments) < 2 or not 0 <= index < self.option_count:
            return line
        marked = self.get_option_at_index(index).value in self.selected
        box = segments[1]
        segments[1] = Segment(CHECKED if marked else UNCHECKED, box.style, box.control)
        return Strip(segments, line.cell_length)


def root_disk_text(size: Any, fmt: Formatter) -> str:
    """What the image gives the VM: ``root disk 64M (the image's size)``."""
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        return "root disk: the image's size (unknown yet)"
    return f"root disk {fmt.size(size)} (the image's size)"


class CreateVmDialog(FormDialog[VmRequest]):
    """Dismissed with a :class:`VmRequest`, or None when cancelled."""

    DEFAULT_CSS = """
    CreateVmDialog SelectionList {
        height: auto;
        max-height: 6;
    }
    CreateVmDialog #root-disk {
        margin-top: 0;
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="ztui.create-vm.cancel"),
        Binding("ctrl+s", "submit", "Create", id="ztui.create-vm.submit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.loaded = False
        """True once images, offerings and networks are in the form (tests wait on it)."""
        self.image_sizes: dict[str, Any] = {}
        """Image uuid -> its (virtual) size: the root disk a VM of it gets."""

    def compose(self) -> ComposeResult:
        from ztui.screens.help import keys_of

        create = spelled(keys_of(self.app, "ztui.create-vm.submit", "ctrl+s"))
        cancel = spelled(keys_of(self.app, "ztui.create-vm.cancel", "esc"))
        with VerticalScroll() as box:
            box.border_title = TITLE
            box.border_subtitle = f"{create} create · {cancel} cancel"
            yield Label("Name")
            yield Input(placeholder="web", id="name")
            yield Label("Image")
            yield Select[str]([], prompt="loading…", id="image")
            yield Label("", id="root-disk")
            yield Label("Instance offering")
            yield Select[str]([], prompt="loading…", id="offering")
            yield Label("Networks (the first marked is the default)")
            yield NetworkList(id="networks")
            yield Label("Data disks (a disk offering each: vdb, vdc…)", id="disks-label")
            yield NetworkList(id="disks")
            yield Label("Count")
            yield Input("1", id="count", restrict=r"[0-9]*", max_length=3)
            yield Label("User data file (optional: a script or #cloud-config for the guest)")
            yield Input(placeholder="~/cloud-config.yaml", id="user-data")
            yield Label("", id="error")
            with Horizontal():
                yield Button(f"Cancel ({cancel})", id="cancel")
                yield Button(f"Create ({create})", variant="primary", id="create")

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()
        self._load_choices()

    @work(exclusive=True, group="choices", exit_on_error=False)
    async def _load_choices(self) -> None:
        found = await _choices(context_of(self.app))
        images, offerings, networks, disks = (
            found.images,
            found.offerings,
            found.networks,
            found.disks,
        )
        self.image_sizes = found.image_sizes
        image_select = self.query_one("#image", Select)
        image_select.set_options(images)
        image_select.prompt = "choose an image" if images else "no image is Ready: see :image"
        if images:
            image_select.value = images[0][1]
        offering_select = self.query_one("#offering", Select)
        offering_select.set_options(offerings)
        offering_select.prompt = "choose an offering" if offerings else "no offering yet"
        if offerings:
            offering_select.value = offerings[0][1]
        network_list = self.query_one("#networks", SelectionList)
        network_list.clear_options()
        for index, (label, uuid) in enumerate(networks):
            network_list.add_option((label, uuid, index == 0))
        disk_list = self.query_one("#disks", SelectionList)
        disk_list.clear_options()
        for label, uuid in disks:
            disk_list.add_option((label, uuid, False))
        if not disks:
            disk_list.display = False
            self.query_one("#disks-label", Label).update(
                "Data disks: none (no disk offering yet: CreateDiskOffering makes one)"
            )
        self._show_root_disk()
        self.loaded = True

    @on(Select.Changed, "#image")
    def _image_changed(self) -> None:
        self._show_root_disk()

    def _show_root_disk(self) -> None:
        image = self.query_one("#image", Select).value
        label = self.query_one("#root-disk", Label)
        if not isinstance(image, str):
            label.update("")
            return
        fmt = context_of(self.app).formatter
        label.update(root_disk_text(self.image_sizes.get(image), fmt))

    def _show_error(self, text: str) -> None:
        self.query_one("#error", Label).update(text)

    def action_submit(self) -> None:
        name = self.query_one("#name", Input).value.strip()
        count = self.query_one("#count", Input).value.strip()
        image = self.query_one("#image", Select).value
        offering = self.query_one("#offering", Select).value
        problem = check_form(name, count, image, offering)
        if problem is not None:
            self._show_error(problem)
            return
        assert isinstance(image, str) and isinstance(offering, str)
        user_data, problem = read_user_data(self.query_one("#user-data", Input).value)
        if problem is not None:
            self._show_error(problem)
            return
        networks = list(self.query_one("#networks", SelectionList).selected)
        disks = self.disk_offerings()
        self.dismiss(
            VmRequest(names_for(name, int(count)), image, offering, networks, user_data, disks)
        )

    def disk_offerings(self) -> list[str]:
        """The marked disk offerings, in the list's order (the order of the disks)."""
        disk_list = self.query_one("#disks", SelectionList)
        marked = set(disk_list.selected)
        return [
            str(disk_list.get_option_at_index(i).value)
            for i in range(disk_list.option_count)
            if disk_list.get_option_at_index(i).value in marked
        ]


Options = list[tuple[str, str]]
"""(what is shown, the uuid sent), for a Select or a SelectionList."""


@dataclass(frozen=True)
class Choices:
    """What the form offers, from the node."""

    images: Options
    """Ready images a VM boots from (no data volume template)."""
    image_sizes: dict[str, Any]
    """Image uuid -> its virtual size: the root disk a VM of it gets."""
    offerings: Options
    networks: Options
    """The networks a VM may join (private first; one without DHCP says the address must
    be configured in the guest)."""
    disks: Options
    """Disk offerings, by name: a data disk each."""


async def _choices(context: ZtuiContext) -> Choices:
    """What the form offers, as the node has it now (a query that fails offers nothing)."""
    session, fmt = context.session, context.formatter
    images = await session.call(
        "QueryImage",
        {"conditions": ["status=Ready", "mediaType!=DataVolumeTemplate"], "limit": 10000},
    )
    offerings = await session.call("QueryInstanceOffering", {"limit": 10000})
    l3s = await session.call("QueryL3Network", {"limit": 10000})
    refs = await session.call(SERVICE_REFS, {"limit": 1_000_000})
    disk_offerings = await session.call("QueryDiskOffering", {"limit": 10000})

    def rows(reply: Any) -> list[dict[str, Any]]:
        return list(reply.inventories or []) if reply.success else []

    offering_options = [
        (f"{o['name']} ({o['cpuNum']} vCPU, {fmt.size(o['memorySize'])})", str(o["uuid"]))
        for o in rows(offerings)
    ]
    networks = sorted(rows(l3s), key=lambda n: (n.get("category") != "Private", str(n["name"])))
    services = Services.of(rows(refs))
    disks = sorted(rows(disk_offerings), key=lambda o: str(o.get("name")))
    return Choices(
        images=[(str(i["name"]), str(i["uuid"])) for i in rows(images)],
        image_sizes={str(i["uuid"]): i.get("size") for i in rows(images)},
        offerings=offering_options,
        networks=[(network_label(n, services), str(n["uuid"])) for n in networks],
        disks=[(f"{o['name']} ({fmt.size(o.get('diskSize'))})", str(o["uuid"])) for o in disks],
    )
