"""Helpers of the virtual router that plugins serving its guests may call (published; the
router itself is reached through :mod:`core.virtual_router.extension_points`)."""

from __future__ import annotations

from core.virtual_router.sync import SERVED_STATES, hostname_of

__all__ = ["SERVED_STATES", "hostname_of"]
