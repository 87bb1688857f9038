"""How a network service provider plugs in (the virtual router is the first)."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from sqlalchemy.orm import Session


@runtime_checkable
class NetworkServiceProviderType(Protocol):
    """A provider of network services.  The network service keeps one row per provider
    (``NetworkServiceProviderVO``, made at start) and lets L3 networks use its types."""

    provider_type: str
    """E.g. ``VirtualRouter``: the row's ``type`` and ``name``."""
    service_types: tuple[str, ...]
    """E.g. ``("DHCP", "DNS", "SNAT")``."""

    def check_attach(self, session: Session, l3: Any, service_types: list[str]) -> None:
        """Raise (an argument error naming why) if ``l3`` cannot use these services."""
