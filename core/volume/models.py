from __future__ import annotations

from sqlalchemy import BigInteger, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin


class VolumeVO(ResourceMixin, Base):
    """A disk: the root volume of a VM, or a data volume (attached to at most one VM).

    Its files form a qcow2 chain on one primary storage: ``install_path`` is the active
    file (the one a VM writes); below it stand the files of its snapshots
    (core.snapshot), and below those, for a volume made from an image, the image's cache.
    """

    __tablename__ = "volume"
    resource_type = "VolumeVO"

    vm_instance_uuid: Mapped[str | None] = mapped_column(String(32), default=None, index=True)
    primary_storage_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    root_image_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    install_path: Mapped[str | None] = mapped_column(String(1024), default=None)
    type: Mapped[str] = mapped_column(String(16), default="Root")
    """Root or Data."""
    format: Mapped[str] = mapped_column(String(16), default="qcow2")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    """Virtual size in bytes (what is reserved on the primary storage for it)."""
    actual_size: Mapped[int] = mapped_column(BigInteger, default=0)
    status: Mapped[str] = mapped_column(String(32), default="NotInstantiated")
    """NotInstantiated, Creating, Ready, Deleted."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    device_id: Mapped[int] = mapped_column(Integer, default=0)
    """0 for a root volume; a data volume's slot on its VM (1 is ``vdb``) while attached."""
    disk_offering_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    last_vm_instance_uuid: Mapped[str | None] = mapped_column(String(32), default=None)
    """The VM a data volume was last detached from."""
