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


@runtime_checkable
class NetworkServiceTypeExtensionPoint(Protocol):
    """Service types a plugin adds to a provider it does not own (port forwarding and EIP
    to the ``VirtualRouter``, ZStack's ``NetworkServiceProviderVO.networkServiceTypes``).
    The provider's row lists them, and L3 networks may attach them; the plugin does the
    work (its own flows in the provider's chains)."""

    provider_type: str
    """The provider extended, e.g. ``VirtualRouter``."""
    service_types: tuple[str, ...]
    """E.g. ``("PortForwarding", "Eip")``."""
