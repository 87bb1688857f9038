"""ZStack's volume resize messages (grow only), handled by the VM service through
core.volume.resize."""

from __future__ import annotations

from core.kernel.api import ApiMessage, param

MAX_VOLUME_SIZE = 64 * 1024**4
"""Bytes: the largest size asked for (64 TiB; qcow2's limit is far above)."""


class _ResizeVolume(ApiMessage):
    timeout = 600.0
    uuid: str = param(required=True, resource_type="VolumeVO")
    size: int = param(
        required=True,
        number_range=(1, MAX_VOLUME_SIZE),
        description="the new virtual size in bytes; only growing is possible",
    )


class ResizeRootVolume(_ResizeVolume):
    """Grow a root volume (live if its VM runs, else offline); its primary storage must
    have room for the growth."""


class ResizeDataVolume(_ResizeVolume):
    """Grow a data volume (live if the VM it is attached to runs, else offline); its
    primary storage must have room for the growth."""
