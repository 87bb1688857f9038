"""Query conditions as text: ``<field><op><value>``, ``<field> is null``, ``<field> not null``.

Parsed here with the standard library only, so that ``zcli`` can tell a
condition from a parameter without importing the query engine
(:mod:`core.kernel.query`, which applies them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from core.kernel.errors import argerr

_CONDITION = re.compile(
    r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(!\?=|\?=|!~=|~=|!=|>=|<=|=|>|<)(.*)$", re.DOTALL
)
_NULL_CONDITION = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s+(is null|not null)\s*$")
OPERATORS = ("=", "!=", ">", ">=", "<", "<=", "?=", "!?=", "~=", "!~=", "is null", "not null")


@dataclass(frozen=True)
class Condition:
    field: str
    op: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Condition:
        if m := _NULL_CONDITION.match(text):
            return cls(m.group(1), m.group(2))
        if m := _CONDITION.match(text):
            return cls(m.group(1), m.group(2), m.group(3))
        raise argerr(
            f"query condition {text!r} is not of the form <field><op><value> "
            f"(ops: {', '.join(OPERATORS)})"
        )
