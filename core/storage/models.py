from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.kernel.db import Base, ResourceMixin, new_uuid


class BackupStorageVO(ResourceMixin, Base):
    """Where images are kept: a local directory (ZStack's backup storage)."""

    __tablename__ = "backup_storage"
    resource_type = "BackupStorageVO"

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    url: Mapped[str] = mapped_column(String(1024))
    """The directory."""
    type: Mapped[str] = mapped_column(String(32), default="Local")
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Connected")
    total_capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    available_capacity: Mapped[int] = mapped_column(BigInteger, default=0)


class PrimaryStorageVO(ResourceMixin, Base):
    """Where volumes live: a local directory with qcow2 overlays on cached images."""

    __tablename__ = "primary_storage"
    resource_type = "PrimaryStorageVO"

    zone_uuid: Mapped[str] = mapped_column(ForeignKey("zone.uuid"), index=True)
    url: Mapped[str] = mapped_column(String(1024))
    type: Mapped[str] = mapped_column(String(32), default="LocalStorage")
    state: Mapped[str] = mapped_column(String(32), default="Enabled")
    status: Mapped[str] = mapped_column(String(32), default="Connected")
    total_capacity: Mapped[int] = mapped_column(BigInteger, default=0)
    available_capacity: Mapped[int] = mapped_column(BigInteger, default=0)


class PrimaryStorageClusterRefVO(Base):
    __tablename__ = "primary_storage_cluster_ref"
    __table_args__ = (UniqueConstraint("primary_storage_uuid", "cluster_uuid"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    primary_storage_uuid: Mapped[str] = mapped_column(ForeignKey("primary_storage.uuid"))
    cluster_uuid: Mapped[str] = mapped_column(ForeignKey("cluster.uuid"))


class ImageCacheVO(Base):
    """An image copied onto primary storage, the backing file of root volumes."""

    __tablename__ = "image_cache"
    __table_args__ = (UniqueConstraint("primary_storage_uuid", "image_uuid"),)

    uuid: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_uuid)
    primary_storage_uuid: Mapped[str] = mapped_column(ForeignKey("primary_storage.uuid"))
    image_uuid: Mapped[str] = mapped_column(String(32), index=True)
    install_url: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
