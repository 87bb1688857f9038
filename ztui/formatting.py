"""Inventory values to table text, with optional masking of volatile values.

Masking replaces what changes from run to run (uuids, dates, ages, pids, host
names, paths) with fixed placeholders, so a screenshot is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.text import Text

STATE_STYLES = {
    # VMs
    "Running": "bold green",
    "Starting": "yellow",
    "Stopping": "yellow",
    "Rebooting": "yellow",
    "Migrating": "yellow",
    "Pausing": "yellow",
    "Resuming": "yellow",
    "Destroying": "yellow",
    "Expunging": "yellow",
    "Created": "cyan",
    "Stopped": "dim",
    "Paused": "magenta",
    "Destroyed": "red",
    "Unknown": "bold red",
    "Error": "bold red",
    # hosts, routers, images, operations
    "Connected": "green",
    "Connecting": "yellow",
    "Disconnected": "bold red",
    "Ready": "green",
    "Downloading": "yellow",
    "Enabled": "green",
    "Disabled": "dim",
    "Succeeded": "green",
    "Failed": "bold red",
    "RolledBack": "red",
    "RollbackFailed": "bold red reverse",
    # GC jobs
    "Idle": "yellow",
    "Processing": "cyan",
    "Done": "green",
}
"""Colour of each state or status word, wherever a table shows one."""


def _parse_date(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


@dataclass(frozen=True)
class Formatter:
    mask_volatile: bool = False

    def text(self, value: Any) -> str:
        """A plain value: ``None`` is empty, booleans are true/false."""
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        return str(value)

    def date(self, value: Any) -> str:
        """An ISO date-time to ``YYYY-MM-DD HH:MM:SS`` (left as is if not ISO)."""
        if self.mask_volatile:
            return "<date>"
        parsed = _parse_date(value)
        if parsed is not None:
            return parsed.strftime("%Y-%m-%d %H:%M:%S")
        return self.text(value)

    def age(self, value: Any, now: datetime | None = None) -> str:
        """How long ago an ISO date-time was: ``42s``, ``5m``, ``3h``, ``12d``."""
        if self.mask_volatile:
            return "<age>"
        parsed = _parse_date(value)
        if parsed is None:
            return self.text(value)
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        seconds = max(0, int(((now or datetime.now(UTC)) - parsed).total_seconds()))
        for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
            if seconds >= size:
                return f"{seconds // size}{unit}"
        return f"{seconds}s"

    def size(self, value: Any) -> str:
        """Bytes as 512M, 23.0G…"""
        if not isinstance(value, int) or isinstance(value, bool):
            return self.text(value)
        for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if abs(value) >= factor:
                amount = value / factor
                return f"{amount:.0f}{unit}" if amount == int(amount) else f"{amount:.1f}{unit}"
        return f"{value}B"

    def duration(self, seconds: Any) -> str:
        """Seconds as ``12ms``, ``1.4s``, ``2m05s`` (masked: ``<t>``)."""
        if self.mask_volatile:
            return "<t>"
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            return self.text(seconds)
        if seconds < 1:
            return f"{seconds * 1000:.0f}ms"
        if seconds < 60:
            return f"{seconds:.1f}s"
        return f"{int(seconds) // 60}m{int(seconds) % 60:02d}s"

    def state(self, value: Any) -> Text:
        """A state or status word in its colour."""
        word = self.text(value)
        return Text(word, style=STATE_STYLES.get(word, ""))

    def volatile(self, value: Any, placeholder: str) -> str:
        """A value that differs between runs (uuid, pid, path, host name)."""
        return f"<{placeholder}>" if self.mask_volatile else self.text(value)
