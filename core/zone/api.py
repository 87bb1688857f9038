from __future__ import annotations

from typing import ClassVar

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.zone.models import ZoneVO


class CreateZone(ApiMessage):
    """Create a zone: the top of the zone -> cluster -> host tree."""

    tag_resource_type: ClassVar[str] = "ZoneVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)


class UpdateZone(ApiMessage):
    """Rename a zone or change its description."""

    uuid: str = param(required=True, resource_type="ZoneVO")
    name: str = param(max_length=255, non_empty=True)
    description: str = param(max_length=2048)

    def sync_signature(self) -> str:
        return f"Zone-{self.uuid}"


class ChangeZoneState(ApiMessage):
    """Enable or disable a zone; nothing new is placed in a disabled zone."""

    uuid: str = param(required=True, resource_type="ZoneVO")
    state_event: str = param(required=True, valid_values=("enable", "disable"))

    def sync_signature(self) -> str:
        return f"Zone-{self.uuid}"


class DeleteZone(ApiMessage):
    """Delete a zone (and its tags)."""

    uuid: str = param(required=True, resource_type="ZoneVO")

    def sync_signature(self) -> str:
        return f"Zone-{self.uuid}"


class QueryZone(QueryMessage):
    """Query zones."""

    model = ZoneVO
