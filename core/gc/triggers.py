"""Trigger events of GC jobs: an event path, optionally with conditions on its data.

A trigger is ``<path>`` or ``<path>?<key>=<value>&...``: the job runs at once when an
event is published on ``path`` (a pattern of :mod:`core.kernel.events`, ``{token}``
segments allowed) whose data has every ``key`` (top-level) equal to ``value`` (compared as
text).  E.g. ``/host/status/change?hostUuid=<uuid>&newStatus=Connected``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from core.kernel.errors import argerr

HOST_STATUS_EVENT = "/host/status/change"
"""Published by the host plugin (core.host.plugin.STATUS_EVENT) when a host's status changes."""


def host_connected(host_uuid: str) -> str:
    """The trigger for "host ``host_uuid`` (re)connected"."""
    return f"{HOST_STATUS_EVENT}?hostUuid={host_uuid}&newStatus=Connected"


@dataclass(frozen=True)
class Trigger:
    text: str
    path: str
    conditions: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> Trigger:
        """The trigger ``text`` names; argerr saying what is wrong otherwise."""
        if not isinstance(text, str):
            raise argerr(f"GC job trigger {text!r} is not a string")
        path, _, query = text.partition("?")
        if not path.startswith("/") or path.endswith("/") or "//" in path:
            raise argerr(f"GC job trigger {text!r}: {path!r} is not an event path like /a/b")
        try:
            pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
        except ValueError:
            raise argerr(
                f"GC job trigger {text!r}: conditions must look like key=value&key2=value2"
            ) from None
        if any(not key for key, _ in pairs):
            raise argerr(f"GC job trigger {text!r}: a condition has no key")
        return cls(text, path, tuple(pairs))

    def matches(self, data: Any) -> bool:
        """Whether an event's data meet the conditions."""
        if not self.conditions:
            return True
        if not isinstance(data, Mapping):
            return False
        return all(k in data and str(data[k]) == v for k, v in self.conditions)
