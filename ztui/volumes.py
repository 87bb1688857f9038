"""Volumes and their snapshots as the node's Query APIs answer them: rows for the volumes
view (with the VM and device a volume is attached as), sizes typed as ``10G``, and a
volume's snapshots as trees (a revert starts a branch, a full snapshot a new tree).

What is here is data only; the verbs are in the volumes view, the dialogs in
``ztui.dialogs.volume``.  The snapshot APIs come with a plugin (volumeSnapshot): a node
without them has no snapshot panel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Inventory = Mapping[str, Any]
Row = dict[str, Any]

ROOT, DATA = "Root", "Data"
READY, DELETED = "Ready", "Deleted"
ATTACHABLE_VM_STATES = frozenset({"Running", "Stopped", "Paused"})
"""States of a VM a data volume may be attached to (the node decides; these are offered)."""
VOLUME_APIS = frozenset(
    {
        "CreateDataVolume",
        "CreateDataVolumeFromVolumeTemplate",
        "AttachDataVolumeToVm",
        "DetachDataVolumeFromVm",
        "DeleteDataVolume",
        "RecoverDataVolume",
        "ExpungeDataVolume",
        "ResizeRootVolume",
        "ResizeDataVolume",
        "CreateVolumeSnapshot",
        "RevertVolumeFromSnapshot",
        "DeleteVolumeSnapshot",
        "CreateVmInstance",
        "ExpungeVmInstance",
    }
)
"""The APIs whose end changes what the volumes view shows (it then reads them again)."""

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?", re.IGNORECASE)
_FACTORS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def parse_size(text: str) -> int | None:
    """``10G`` → 10 GiB in bytes (K, M, G, T are powers of 1024; ``1.5G``, ``512MiB`` and
    plain bytes too); None when it is no size or not over 0."""
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        return None
    size = int(float(found[1]) * _FACTORS[found[2].upper()])
    return size if size > 0 else None


def device_name(device_id: Any) -> str:
    """``vda`` for device 0 (the root volume), ``vdb`` for 1…; "" for none."""
    if not isinstance(device_id, int) or isinstance(device_id, bool) or device_id < 0:
        return ""
    name, n = "", device_id
    while True:  # vda…vdz, then vdaa… as the kernel names them
        name = chr(ord("a") + n % 26) + name
        n = n // 26 - 1
        if n < 0:
            return f"vd{name}"


@dataclass
class VolumeData:
    """Volumes with the VMs they are attached to and the disk offerings they came from."""

    volumes: list[Inventory] = field(default_factory=list)
    vms: Sequence[Inventory] = ()
    offerings: Sequence[Inventory] = ()

    def vm_name(self, uuid: Any) -> str:
        return next((str(v["name"]) for v in self.vms if v.get("uuid") == uuid), "")

    def row(self, volume: Inventory) -> Row:
        """A volume with its VM's name and its device (``vdb``); a detached one names the
        VM it was last on, in brackets."""
        vm = volume.get("vmInstanceUuid")
        if vm:
            vm_name, device = self.vm_name(vm) or "?", device_name(volume.get("deviceId"))
        else:
            last = self.vm_name(volume.get("lastVmInstanceUuid"))
            vm_name, device = (f"({last})" if last else ""), ""
        return {**volume, "vmName": vm_name, "device": device}

    def rows(self) -> list[Row]:
        """Root volumes first, each VM's by device; then data volumes by name."""
        return [self.row(v) for v in sorted(self.volumes, key=self._order)]

    def _order(self, volume: Inventory) -> tuple[Any, ...]:
        root = volume.get("type") == ROOT
        return (
            not root,
            self.vm_name(volume.get("vmInstanceUuid")) if root else "",
            str(volume.get("name") or ""),
            str(volume.get("uuid")),
        )

    def attachable_vms(self) -> list[Inventory]:
        """User VMs a data volume may be attached to, by name."""
        found = [
            v
            for v in self.vms
            if v.get("type", "UserVm") == "UserVm" and v.get("state") in ATTACHABLE_VM_STATES
        ]
        return sorted(found, key=lambda v: str(v.get("name")))


@dataclass
class SnapshotNode:
    """One snapshot and the snapshots that stand on it."""

    inventory: Inventory
    children: list[SnapshotNode] = field(default_factory=list)

    @property
    def uuid(self) -> str:
        return str(self.inventory["uuid"])

    @property
    def current(self) -> bool:
        """Whether the volume's active file stands on this snapshot."""
        return bool(self.inventory.get("latest"))

    def walk(self) -> Iterable[SnapshotNode]:
        yield self
        for child in self.children:
            yield from child.walk()


def snapshot_trees(snapshots: Iterable[Inventory]) -> list[SnapshotNode]:
    """The snapshots as trees, from their ``parentUuid``s, each level oldest first (a
    snapshot whose parent is not among them starts a tree)."""
    ordered = sorted(snapshots, key=lambda s: (str(s.get("createDate") or ""), str(s["uuid"])))
    nodes = {str(s["uuid"]): SnapshotNode(s) for s in ordered}
    roots: list[SnapshotNode] = []
    for snapshot in ordered:
        parent = nodes.get(str(snapshot.get("parentUuid") or ""))
        (roots if parent is None else parent.children).append(nodes[str(snapshot["uuid"])])
    return roots
