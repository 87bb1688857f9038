from __future__ import annotations

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.tag.models import SystemTagVO, UserTagVO


class _CreateTag(ApiMessage):
    resource_type: str = param(required=True, max_length=64, description="e.g. ZoneVO")
    resource_uuid: str = param(required=True, max_length=32)
    tag: str = param(required=True, max_length=256, non_empty=True)

    def sync_signature(self) -> str:
        return f"Tag-{self.resource_uuid}"


class CreateSystemTag(_CreateTag):
    """Attach a system tag to a resource; the tag must match a defined pattern."""


class CreateUserTag(_CreateTag):
    """Attach a free-form user tag to a resource."""


class DeleteTag(ApiMessage):
    """Delete a system or user tag; inherent system tags cannot be deleted."""

    uuid: str = param(required=True, max_length=32)


class QuerySystemTag(QueryMessage):
    """Query system tags, e.g. resourceUuid=... or tag~=qemu-img::%."""

    model = SystemTagVO


class QueryUserTag(QueryMessage):
    """Query user tags."""

    model = UserTagVO
