"""System tag definitions and matching (ZStack's SystemTag, PatternedSystemTag, TagUtils).

A tag is a string of ``::``-separated parts.  A definition's pattern may hold
``{token}`` parts: ``qemu-img::version::{version}`` matches
``qemu-img::version::8.2.0`` and parses to ``{"version": "8.2.0"}``.  A pattern
without ``::`` matches only itself.  Values may not contain ``::``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

_TOKEN = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
SEPARATOR = "::"


@dataclass(frozen=True)
class SystemTagDef:
    pattern: str
    resource_type: str
    """The ZStack VO name of the resources it goes on, e.g. HostVO."""

    @property
    def parts(self) -> list[str]:
        return self.pattern.split(SEPARATOR)

    @property
    def tokens(self) -> list[str]:
        return [m.group(1) for p in self.parts if (m := _TOKEN.match(p))]

    def parse(self, tag: str) -> dict[str, str] | None:
        """The token values if ``tag`` matches this pattern, else None."""
        if SEPARATOR not in self.pattern:
            return {} if tag == self.pattern else None
        parts = tag.split(SEPARATOR)
        if len(parts) != len(self.parts):
            return None
        found: dict[str, str] = {}
        for want, got in zip(self.parts, parts, strict=True):
            if m := _TOKEN.match(want):
                if not got:
                    return None
                found[m.group(1)] = got
            elif want != got:
                return None
        return found

    def matches(self, tag: str) -> bool:
        return self.parse(tag) is not None

    def instantiate(self, **tokens: str) -> str:
        """The tag for these token values: ``hvm::{flag}`` + flag=vmx -> ``hvm::vmx``."""
        out = []
        for part in self.parts:
            if m := _TOKEN.match(part):
                value = str(tokens[m.group(1)])
                if SEPARATOR in value or not value:
                    raise ValueError(f"tag token {m.group(1)}={value!r} is empty or holds '::'")
                out.append(value)
            else:
                out.append(part)
        return SEPARATOR.join(out)

    def sql_like(self) -> str:
        """A LIKE pattern (escape character ``\\``) selecting candidates for this pattern."""
        out = []
        for part in self.parts:
            if _TOKEN.match(part):
                out.append("%")
            else:
                out.append(part.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"))
        return SEPARATOR.join(out)


class SystemTagProvider(ABC):
    """An extension point: a plugin that defines system tags."""

    @abstractmethod
    def system_tags(self) -> list[SystemTagDef]: ...
