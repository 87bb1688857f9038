"""The VM verbs on its root volume, shared by the VMs view and the VM detail view: take a
snapshot of it, and make an image of it (CreateRootVolumeTemplateFromRootVolume: the
VM must be stopped; the node refuses otherwise and the refusal is shown).

Each asks a name first.  An image takes as long as copying the disk: its progress shows
as a bar in the images view (the node reports it as a download's), the flow-chain panel
follows its operation, and the status line says when it is done.  The volumes view
shows a snapshot's tree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from textual.binding import Binding

from ztui.dialogs.volume import NameDialog

if TYPE_CHECKING:
    from ztui.screens.base import ZtuiScreen

Row = Mapping[str, Any]


def disk_bindings(area: str) -> list[Binding]:
    """The bindings for one place, ids ``<area>.snapshot`` and ``<area>.image``."""
    return [
        Binding("z", "root_snapshot", "Snapshot", id=f"{area}.snapshot", show=False),
        Binding("I", "root_image", "Create image", id=f"{area}.image", show=False),
    ]


def _root_volume(screen: ZtuiScreen, vm: Row | None) -> str | None:
    if vm is None:
        screen.notify("No VM selected.", severity="warning")
        return None
    if not vm.get("rootVolumeUuid"):
        screen.notify(f"VM {vm.get('name')} has no root volume.", severity="warning")
        return None
    return str(vm["rootVolumeUuid"])


def snapshot(screen: ZtuiScreen, vm: Row | None) -> None:
    """Ask a name, then snapshot the VM's root volume (live if it runs)."""
    volume = _root_volume(screen, vm)
    if vm is None or volume is None:
        return
    name = str(vm.get("name"))

    def answered(snapshot_name: str | None) -> None:
        if snapshot_name is not None:
            screen.run_worker(
                take_snapshot(screen, name, volume, snapshot_name),
                group="verbs",
                exit_on_error=False,
            )

    live = " (live: it runs)" if vm.get("state") in ("Running", "Paused") else ""
    dialog = NameDialog(
        f"Snapshot of VM {name}",
        f"Freezes what its root volume holds now{live}; :volumes shows its snapshots.",
        f"{name}-snap",
        "Snapshot",
    )
    screen.app.push_screen(dialog, answered)


async def take_snapshot(screen: ZtuiScreen, vm_name: str, volume_uuid: str, name: str) -> bool:
    screen.status.show_info(f"taking snapshot {name} of {vm_name}'s root volume…")
    params = {"volumeUuid": volume_uuid, "name": name}
    if await screen.api_call("CreateVolumeSnapshot", params) is None:
        return False
    screen.status.show_info(f"took snapshot {name} of {vm_name}'s root volume (see :volumes)")
    return True


def create_image(screen: ZtuiScreen, vm: Row | None) -> None:
    """Ask a name, then make an image of the VM's root volume."""
    volume = _root_volume(screen, vm)
    if vm is None or volume is None:
        return
    name = str(vm.get("name"))

    def answered(image_name: str | None) -> None:
        if image_name is not None:
            screen.run_worker(
                make_image(screen, name, volume, image_name), group="verbs", exit_on_error=False
            )

    dialog = NameDialog(
        f"Image of VM {name}",
        "A standalone copy of its root volume on backup storage, to create VMs from. "
        "The VM must be stopped; :images shows the copy's progress.",
        f"{name}-image",
        "Create",
    )
    screen.app.push_screen(dialog, answered)


async def make_image(screen: ZtuiScreen, vm_name: str, volume_uuid: str, name: str) -> bool:
    screen.status.show_info(f"creating image {name} of {vm_name} (progress in :images)…")
    params = {"rootVolumeUuid": volume_uuid, "name": name}
    image = await screen.api_call("CreateRootVolumeTemplateFromRootVolume", params)
    if not isinstance(image, dict):
        return False
    size = screen.fmt.size(image.get("size"))
    screen.status.show_info(f"created image {name} of {vm_name} ({size})")
    return True
