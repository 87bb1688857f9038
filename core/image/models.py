from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin, new_uuid


class ImageVO(ResourceMixin, Base):
    __tablename__ = "image"
    resource_type = "ImageVO"

    url: Mapped[str] = mapped_column(String(2048))
    """Where it was added from: a local path or an http(s) URL."""
    status: Mapped[str] = mapped_column(String(32), default="Downloading")
    """Downloading (AddImage), Creating (made from a volume), Ready, Deleted."""
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    format: Mapped[str | None] = mapped_column(String(32), default=None)
    media_type: Mapped[str] = mapped_column(String(32), default="RootVolumeTemplate")
    platform: Mapped[str] = mapped_column(String(32), default="Linux")
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    """Virtual size in bytes."""
    actual_size: Mapped[int] = mapped_column(BigInteger, default=0)
    md5sum: Mapped[str | None] = mapped_column(String(64), default=None)


class ImageBackupStorageRefVO(Base):
    __tablename__ = "image_backup_storage_ref"
    __table_args__ = (UniqueConstraint("image_uuid", "backup_storage_uuid"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    image_uuid: Mapped[str] = mapped_column(ForeignKey("image.uuid"), index=True)
    backup_storage_uuid: Mapped[str] = mapped_column(ForeignKey("backup_storage.uuid"))
    install_path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(32), default="Downloading")
