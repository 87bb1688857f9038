"""Extension points of the L3 network service."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class L3NetworkDeletionExtensionPoint(ABC):
    """Asked before an L3 network no VM uses is deleted: refuse (raise, naming why), or
    take away what only served it (e.g. its virtual router)."""

    @abstractmethod
    async def before_delete_l3_network(self, l3: dict[str, Any]) -> None: ...
