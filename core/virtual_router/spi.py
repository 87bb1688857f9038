"""Helpers of the virtual router that plugins serving its guests may call (published; the
router itself is reached through :mod:`core.virtual_router.extension_points`)."""

from __future__ import annotations

from typing import Any

from core.kernel.errors import operr
from core.virtual_router.extension_points import VirtualRouterAccess
from core.virtual_router.sync import SERVED_STATES, hostname_of

__all__ = ["SERVED_STATES", "hostname_of", "router_access"]


def router_access(node: Any, needed_by: str) -> VirtualRouterAccess:
    """The virtual router as plugins see it, or an operr saying that ``needed_by`` (e.g.
    "user data") needs the router plugin, which is disabled."""
    found = node.registry.extensions(VirtualRouterAccess)
    if not found:
        raise operr(f"the virtual router plugin is disabled; {needed_by} needs it")
    access: VirtualRouterAccess = found[0]
    return access
