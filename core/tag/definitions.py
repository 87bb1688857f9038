"""System tag definitions and matching (ZStack's SystemTag, PatternedSystemTag, TagUtils).

A tag is a string of ``::``-separated parts.  A definition's pattern may hold
``{token}`` parts: ``qemu-img::version::{version}`` matches
``qemu-img::version::8.2.0`` and parses to ``{"version": "8.2.0"}``.  A pattern
without ``::`` matches only itself.  Values may not contain ``::``.

Who may write a tag is part of its definition.  By default a tag belongs to the service
that defines it: the service writes it (facts such as a host's libvirt version, inherent
tags) or takes it only through the APIs it lists in ``apis``, which check it and act on it
(``hostNat`` through CreateL3Network).  CreateSystemTag and DeleteTag refuse such a tag,
so they cannot bypass what those APIs refuse.  A definition with ``user_editable`` may be
created and deleted by users on an existing resource, its ``check`` run first.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

_TOKEN = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
SEPARATOR = "::"


TagCheck = Callable[["Session", str, dict[str, str]], None]
"""``(session, resource uuid, the tag's tokens)``: raise an argerr if a user's tag may not go
on that resource."""


@dataclass(frozen=True)
class SystemTagDef:
    pattern: str
    resource_type: str
    """The ZStack VO name of the resources it goes on, e.g. HostVO."""
    apis: tuple[str, ...] = ()
    """The API messages whose ``systemTags`` may carry the tag: their service checks it and
    acts on it (``staticIp`` on CreateVmInstance).  Any other message carrying it is refused
    (unless ``user_editable``)."""
    user_editable: bool = False
    """Users may create it on an existing resource (CreateSystemTag, or ``systemTags`` of a
    message creating one), ``check`` deciding, and delete it (DeleteTag).  False: only its
    service writes and removes it."""
    check: TagCheck | None = None
    """Run before a user's tag is written (``user_editable`` tags only)."""

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
