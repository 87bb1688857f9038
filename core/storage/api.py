from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.storage.models import BackupStorageVO, PrimaryStorageVO

ABSOLUTE_PATH = r"/[^\x00]*"


class _AddLocalStorage(ApiMessage):
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    zone_uuid: str = param(required=True, resource_type="ZoneVO")
    url: str = param(
        required=True,
        max_length=1024,
        regex=ABSOLUTE_PATH,
        description="an absolute directory path",
    )


class AddLocalBackupStorage(_AddLocalStorage):
    """Keep images in a directory of this machine (made by the local host's agent)."""

    tag_resource_type: ClassVar[str] = "BackupStorageVO"


class AddLocalPrimaryStorage(_AddLocalStorage):
    """Keep volumes in a directory of this machine (made by the local host's agent)."""

    tag_resource_type: ClassVar[str] = "PrimaryStorageVO"


class AttachPrimaryStorageToCluster(ApiMessage):
    """Let the hosts of a cluster put volumes on a primary storage."""

    primary_storage_uuid: str = param(required=True, resource_type="PrimaryStorageVO")
    cluster_uuid: str = param(required=True, resource_type="ClusterVO")

    def sync_signature(self) -> str:
        return f"PrimaryStorage-{self.primary_storage_uuid}"


class DeleteBackupStorage(ApiMessage):
    """Forget a backup storage that holds no image (its directory is left as it is)."""

    uuid: str = param(required=True, resource_type="BackupStorageVO")


class DeletePrimaryStorage(ApiMessage):
    """Forget a primary storage that holds no volume (its directory is left as it is)."""

    uuid: str = param(required=True, resource_type="PrimaryStorageVO")

    def sync_signature(self) -> str:
        return f"PrimaryStorage-{self.uuid}"


class QueryBackupStorage(QueryMessage):
    """Query backup storage."""

    model = BackupStorageVO


class QueryPrimaryStorage(QueryMessage):
    """Query primary storage."""

    model = PrimaryStorageVO
