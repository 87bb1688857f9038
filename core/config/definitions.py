"""Global config definitions: what a run-time setting is and which values it accepts.

Each service area lists its configs as :class:`GlobalConfigDef` objects and
publishes them through a plugin implementing :class:`GlobalConfigProvider`.
Values are kept as strings (as ZStack does) and validated by type and rules.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from core.kernel.errors import argerr

SIZE = re.compile(r"^(\d+)\s*([KMGT]?)B?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
TYPES = ("Integer", "Float", "Boolean", "String", "Size")


def parse_size(text: str) -> int:
    """``512M`` -> bytes; a plain number is bytes."""
    m = SIZE.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a size like 512M, 2G or 1073741824")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


@dataclass(frozen=True)
class GlobalConfigDef:
    category: str
    name: str
    description: str
    default: str
    type: str = "String"
    """Integer, Float, Boolean, String or Size (bytes, written like 512M)."""
    number_range: tuple[float, float] | None = None
    """Inclusive bounds (ZStack's numberGreaterThan/numberLessThan are inclusive too)."""
    valid_values: tuple[str, ...] | None = None
    regex: str | None = None

    def __post_init__(self) -> None:
        if self.type not in TYPES:
            raise ValueError(f"global config {self.identity}: unknown type {self.type}")
        self.validate(self.default)  # a definition with a bad default is a bug

    @property
    def identity(self) -> str:
        return f"{self.category}.{self.name}"

    def typed(self, value: str) -> Any:
        """The value as the type says: int, float, bool, str, or bytes for Size."""
        if self.type == "Integer":
            return int(value.strip())
        if self.type == "Float":
            return float(value.strip())
        if self.type == "Boolean":
            low = value.strip().lower()
            if low not in ("true", "false"):
                raise ValueError(value)
            return low == "true"
        if self.type == "Size":
            return parse_size(value)
        return value

    def validate(self, value: str) -> None:
        """Raise argerr naming the rule ``value`` breaks."""
        what = f"value {value!r} of global config {self.identity}"
        try:
            typed = self.typed(value)
        except ValueError:
            kind = {
                "Size": "a size like 512M or 2G",
                "Integer": "an integer",
                "Float": "a number",
                "Boolean": "true or false",
            }.get(self.type, self.type)
            raise argerr(f"{what} is not {kind}") from None
        if self.valid_values is not None and value not in self.valid_values:
            raise argerr(
                f"{what} breaks the rule: valid values are [{', '.join(self.valid_values)}]"
            )
        if self.number_range is not None:
            low, high = self.number_range
            if not low <= typed <= high:
                raise argerr(f"{what} breaks the rule: number in range [{_num(low)}, {_num(high)}]")
        if self.regex is not None and not re.fullmatch(self.regex, value):
            raise argerr(f"{what} breaks the rule: must match {self.regex}")

    def rules(self) -> str:
        """The rules in words, for help texts and the UI."""
        bits = [self.type]
        if self.valid_values:
            bits.append("one of " + "|".join(self.valid_values))
        if self.number_range:
            bits.append(f"in [{_num(self.number_range[0])}, {_num(self.number_range[1])}]")
        if self.regex:
            bits.append(f"matching {self.regex}")
        return ", ".join(bits)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class GlobalConfigProvider(ABC):
    """An extension point: a plugin that defines global configs."""

    @abstractmethod
    def global_configs(self) -> list[GlobalConfigDef]: ...


class GlobalConfigBeforeUpdateExtensionPoint(ABC):
    """Called before a value is saved; raising OperationError refuses the update."""

    @abstractmethod
    async def before_update_global_config(
        self, definition: GlobalConfigDef, old_value: str, new_value: str
    ) -> None: ...


class GlobalConfigUpdateExtensionPoint(ABC):
    """Called after a value is saved; errors are logged and never undo the update."""

    @abstractmethod
    async def after_update_global_config(
        self, definition: GlobalConfigDef, old_value: str, new_value: str
    ) -> None: ...
