from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class VolumeSnapshotVO(ResourceMixin, Base):
    """A point in a volume's past: an immutable qcow2 file of its chain (the file that was
    the volume's active one when the snapshot was taken).

    ``parent_uuid`` is the snapshot whose file this one's stands on (None: it stands on
    the volume's base, an image cache or nothing); ``latest`` marks the one the volume's
    active file stands on.  Snapshots of a volume form a forest (a revert starts a
    branch); ``full`` ones start a new chain (their file stands on nothing).
    """

    __tablename__ = "volume_snapshot"
    resource_type = "VolumeSnapshotVO"

    volume_uuid: Mapped[str] = mapped_column(String(32), index=True)
    tree_uuid: Mapped[str] = mapped_column(String(32))
    parent_uuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    primary_storage_uuid: Mapped[str] = mapped_column(String(32))
    install_path: Mapped[str] = mapped_column(String(1024))
    volume_type: Mapped[str] = mapped_column(String(16), default="Root")
    format: Mapped[str] = mapped_column(String(16), default="qcow2")
    type: Mapped[str] = mapped_column(String(32), default="Hypervisor")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    """Bytes its file takes (reserved on the primary storage while it exists)."""
    latest: Mapped[bool] = mapped_column(Boolean, default=False)
    full: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(32), default="Creating")
    """Creating, Ready, Deleting."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
