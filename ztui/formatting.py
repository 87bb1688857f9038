"""Inventory values to table text, with optional masking of volatile values.

Masking replaces what changes from run to run (uuids, dates, pids, host
names, paths) with fixed placeholders, so a screenshot is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


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
        if isinstance(value, str):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return value
        if isinstance(value, datetime):
            return value.strftime("%Y-%m-%d %H:%M:%S")
        return self.text(value)

    def size(self, value: Any) -> str:
        """Bytes as 512M, 23.0G…"""
        if not isinstance(value, int) or isinstance(value, bool):
            return self.text(value)
        for unit, factor in (("T", 1 << 40), ("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
            if abs(value) >= factor:
                amount = value / factor
                return f"{amount:.0f}{unit}" if amount == int(amount) else f"{amount:.1f}{unit}"
        return f"{value}B"

    def volatile(self, value: Any, placeholder: str) -> str:
        """A value that differs between runs (uuid, pid, path, host name)."""
        return f"<{placeholder}>" if self.mask_volatile else self.text(value)
