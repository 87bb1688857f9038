"""The volume snapshot APIs, with ZStack's names and parameters.

Each runs concurrently at the bus (no sync signature): its handler holds the volume's
queue, then its VM's (core.volume.spi.volume_locked), so it never runs beside another
operation on the volume or a start, stop or migration of its VM.
"""

from __future__ import annotations

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.snapshot.models import VolumeSnapshotVO


class CreateVolumeSnapshot(ApiMessage):
    """Freeze the volume's current content as a snapshot (live while its VM runs): its
    active file becomes the snapshot's, and a new file on it the volume's active file."""

    volume_uuid: str = param(required=True, resource_type="VolumeVO")
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    timeout = 3600.0


class RevertVolumeFromSnapshot(ApiMessage):
    """Make the volume read what the snapshot holds (its VM must be Stopped, or the volume
    detached); what was written since the latest snapshot is lost."""

    uuid: str = param(required=True, resource_type="VolumeSnapshotVO")
    timeout = 600.0


class DeleteVolumeSnapshot(ApiMessage):
    """Delete a snapshot; every other snapshot and the volume keep their content (the
    snapshot's data is merged into the files that stand on it)."""

    uuid: str = param(required=True, resource_type="VolumeSnapshotVO")
    timeout = 24 * 3600.0


class QueryVolumeSnapshot(QueryMessage):
    model = VolumeSnapshotVO


class GetVolumeSnapshotTree(ApiMessage):
    """A volume's snapshots as trees (a revert starts a branch, a full snapshot a new
    tree): ``{volumeUuid, installPath, trees: [{inventory, current, children: [...]}]}``,
    ``current`` marking the snapshot the volume's active file stands on."""

    volume_uuid: str = param(required=True, resource_type="VolumeVO")
    read_only = True
