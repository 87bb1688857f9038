"""What plugins may use of the tag service: defining system tags (published; the tag
service's own modules are not).  Tags are read as rows of ``core.tag.models``."""

from __future__ import annotations

from core.tag.definitions import SystemTagDef, SystemTagProvider

__all__ = ["SystemTagDef", "SystemTagProvider"]
