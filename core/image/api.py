from __future__ import annotations

import re
from typing import ClassVar
from urllib.parse import urlparse

from core.image.models import ImageVO
from core.kernel.api import ApiMessage, param
from core.kernel.errors import argerr
from core.kernel.query import QueryMessage

IMAGE_FORMATS = ("qcow2", "raw", "iso")
MEDIA_TYPES = ("RootVolumeTemplate", "ISO")
PLATFORMS = ("Linux", "Windows", "Other")
CHECKSUM = re.compile(r"(sha256:[0-9a-fA-F]{64}|md5:[0-9a-fA-F]{32})")
DOWNLOAD_TIMEOUT = 3600.0
"""Seconds an image download may take (the AddImage call and the agent's answer)."""


class AddImage(ApiMessage):
    """Add an image to backup storage: fetched by the agent, checked, then Ready."""

    tag_resource_type: ClassVar[str] = "ImageVO"
    timeout = DOWNLOAD_TIMEOUT
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    url: str = param(
        required=True,
        max_length=2048,
        non_empty=True,
        description="an http(s) URL or an absolute path of a file on this machine",
    )
    backup_storage_uuids: list[str] = param(
        default=[],
        resource_type="BackupStorageVO",
        description="where to keep the image; default: every backup storage",
    )
    format: str = param(
        valid_values=IMAGE_FORMATS,
        description="the format expected; the image is refused if qemu-img finds another",
    )
    checksum: str = param(max_length=80, description="sha256:<hex> or md5:<hex>")
    media_type: str = param(default="RootVolumeTemplate", valid_values=MEDIA_TYPES)
    platform: str = param(default="Linux", valid_values=PLATFORMS)

    def validate(self) -> None:
        super().validate()
        if self.url is not None:
            check_url(self.url)
        if self.checksum and not CHECKSUM.fullmatch(self.checksum):
            raise argerr(
                f"parameter checksum of {self.api_name} must be sha256:<64 hex digits> "
                f"or md5:<32 hex digits>, got {self.checksum!r}"
            )
        if self.media_type == "ISO" and self.format not in (None, "iso"):
            raise argerr(f"an ISO image has the format iso, not {self.format}")
        if self.media_type == "RootVolumeTemplate" and self.format == "iso":
            raise argerr("an iso image is added with mediaType ISO, not RootVolumeTemplate")


def check_url(url: str) -> None:
    """An http(s) URL with a host, a file:// URL or an absolute path; argerr otherwise."""
    parsed = urlparse(url)
    if parsed.scheme in ("http", "https"):
        if not parsed.hostname:
            raise argerr(f"parameter url of AddImage: {url!r} names no host")
        return
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost") or not parsed.path.startswith("/"):
            raise argerr(f"parameter url of AddImage: {url!r} is not a file:///<path> URL")
        return
    if parsed.scheme or not url.startswith("/"):
        raise argerr(
            "parameter url of AddImage must be an http(s) URL or an absolute local path, "
            f"got {url!r}"
        )


class DeleteImage(ApiMessage):
    """Delete an image as image.deletionPolicy says (Direct, Delay or Never)."""

    uuid: str = param(required=True, resource_type="ImageVO")

    def sync_signature(self) -> str:
        return f"Image-{self.uuid}"


class RecoverImage(ApiMessage):
    """Make a Deleted (not yet expunged) image Ready again."""

    uuid: str = param(required=True, resource_type="ImageVO")

    def sync_signature(self) -> str:
        return f"Image-{self.uuid}"


class ExpungeImage(ApiMessage):
    """Remove a Deleted image for good: its files on every backup storage, then its record."""

    timeout = 600.0
    uuid: str = param(required=True, resource_type="ImageVO")

    def sync_signature(self) -> str:
        return f"Image-{self.uuid}"


TEMPLATE_TIMEOUT = DOWNLOAD_TIMEOUT
"""Seconds an image made from a volume may take (the export of every copy)."""


class CreateRootVolumeTemplateFromRootVolume(ApiMessage):
    """Make an image (RootVolumeTemplate) of a root volume whose VM is stopped: a
    standalone qcow2 copy of what the volume reads, on backup storage, from which VMs
    can be created."""

    timeout = TEMPLATE_TIMEOUT
    root_volume_uuid: str = param(required=True, resource_type="VolumeVO")
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    backup_storage_uuids: list[str] = param(
        default=[],
        resource_type="BackupStorageVO",
        description="where to keep the image; default: every backup storage of the zone",
    )
    platform: str = param(
        valid_values=PLATFORMS, description="default: the platform of the volume's VM"
    )


class CreateDataVolumeTemplateFromVolume(ApiMessage):
    """Make an image (DataVolumeTemplate) of a volume (root or data) that no running VM
    uses: a standalone qcow2 copy of what the volume reads, on backup storage."""

    timeout = TEMPLATE_TIMEOUT
    volume_uuid: str = param(required=True, resource_type="VolumeVO")
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    backup_storage_uuids: list[str] = param(
        default=[],
        resource_type="BackupStorageVO",
        description="where to keep the image; default: every backup storage of the zone",
    )


class QueryImage(QueryMessage):
    """Query images."""

    model = ImageVO
