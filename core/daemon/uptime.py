"""How long a node has run, as both clients say it (``zstack-lite status``, the dashboard)."""

from __future__ import annotations


def format_uptime(seconds: float) -> str:
    """``3d 4h 5m``, ``2h 5m``, ``4m 10s``."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"
