"""Extension points of host allocation."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class InstanceOfferingTagAllocatorExtensionPoint(ABC):
    """Narrow the candidate hosts by the tags of the VM's instance offering."""

    @abstractmethod
    async def allocate_by_tags(
        self, spec: Any, candidates: list[dict[str, Any]]
    ) -> list[dict[str, Any]]: ...
