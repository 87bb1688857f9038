"""API messages: typed classes named as ZStack's, with declared parameters.

A message class lists its parameters as annotated attributes whose default is
:func:`param`; attribute names are snake_case and the API names are ZStack's
camelCase (``l3_network_uuids`` is ``l3NetworkUuids``)::

    class UpdateGlobalConfig(ApiMessage):
        category: str = param(required=True, max_length=64)
        name: str = param(required=True, max_length=255)
        value: str = param(required=True, max_length=2048)

:meth:`ApiMessage.from_params` coerces and validates what a caller sent (zcli
sends strings) and raises an ``argerr`` naming the parameter and the rule it
breaks.  Checks that need the database (a uuid that must exist with its
resource type) are made by the bus before any interceptor or service sees the
message, so bad parameters never reach a service.
"""

from __future__ import annotations

import inspect
import math
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Self

from agentkit import bounded_json
from core.kernel.db import camel
from core.kernel.errors import ErrorCode, argerr

if TYPE_CHECKING:
    from core.kernel.api_params import ApiParameterExtensionPoint

_MISSING: Any = object()
INT_RANGE = (-(2**63), 2**63 - 1)
"""An integer parameter fits the database's widest integer column (signed 64 bits)."""


@dataclass(frozen=True)
class Param:
    required: bool = False
    default: Any = None
    valid_values: tuple[Any, ...] | None = None
    number_range: tuple[float, float] | None = None
    """Inclusive bounds."""
    max_length: int | None = None
    non_empty: bool = False
    regex: str | None = None
    resource_type: str | None = None
    """The value (or each value of a list) is the uuid of an existing resource of this type."""
    description: str = ""


def param(
    *,
    required: bool = False,
    default: Any = None,
    valid_values: tuple[Any, ...] | list[Any] | None = None,
    number_range: tuple[float, float] | None = None,
    max_length: int | None = None,
    non_empty: bool = False,
    regex: str | None = None,
    resource_type: str | None = None,
    description: str = "",
) -> Any:
    return Param(
        required=required,
        default=default,
        valid_values=tuple(valid_values) if valid_values is not None else None,
        number_range=number_range,
        max_length=max_length,
        non_empty=non_empty,
        regex=regex,
        resource_type=resource_type,
        description=description,
    )


@dataclass(frozen=True)
class ParamSpec:
    attr: str
    api_name: str
    kind: type
    """str, int, float, bool, list (of str) or dict."""
    spec: Param

    def describe(self) -> str:
        bits = [_KIND_NAMES[self.kind]]
        p = self.spec
        if p.required:
            bits.append("required")
        elif p.default not in (None, [], {}):
            bits.append(f"default {p.default}")
        if p.valid_values:
            bits.append("one of " + "|".join(str(v) for v in p.valid_values))
        if p.number_range:
            bits.append(f"in [{_num(p.number_range[0])}, {_num(p.number_range[1])}]")
        if p.max_length:
            bits.append(f"max length {p.max_length}")
        if p.resource_type:
            bits.append(f"uuid or name of a {p.resource_type}")
        text = ", ".join(bits)
        return f"{text}: {p.description}" if p.description else text


_KIND_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    list: "list",
    dict: "map",
}


_ARTICLE = {str: "a", int: "an", float: "a", bool: "a", list: "a", dict: "a"}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _kind_of(hint: Any) -> type:
    origin = typing.get_origin(hint)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _kind_of(args[0])
    if origin is not None:
        hint = origin
    if hint in _KIND_NAMES:
        return hint
    raise TypeError(f"unsupported API parameter type {hint!r}")


class ApiMessage:
    """Base of every API message.  Subclasses name their parameters with :func:`param`."""

    api_name: ClassVar[str]
    params: ClassVar[dict[str, ParamSpec]]
    """API (camelCase) name -> spec, in declaration order."""
    timeout: ClassVar[float | None] = None
    """Seconds before the call times out; None means the ``api.timeout`` property."""
    read_only: ClassVar[bool] = False
    """True for queries and gets: they change nothing (allowed in ``--read-only`` UIs)."""

    system_tags: list[str]
    user_tags: list[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.api_name = cls.__name__
        hints = typing.get_type_hints(cls)
        specs: dict[str, ParamSpec] = {}
        for klass in reversed(cls.__mro__):
            for attr in inspect.get_annotations(klass):
                value = getattr(cls, attr, _MISSING)
                if isinstance(value, Param):
                    spec = ParamSpec(attr, camel(attr), _kind_of(hints[attr]), value)
                    specs[spec.api_name] = spec
        cls.params = specs

    def __init__(self, **values: Any) -> None:
        by_attr = {s.attr: s for s in self.params.values()}
        for key in values:
            if key not in by_attr:
                raise TypeError(f"{self.api_name} has no parameter {key}")
        for spec in by_attr.values():
            value = values.get(spec.attr, _MISSING)
            if value is _MISSING:
                value = _copy_default(spec.spec.default)
            setattr(self, spec.attr, value)
        self.system_tags = list(values.get("system_tags", []) or [])
        self.user_tags = list(values.get("user_tags", []) or [])

    @classmethod
    def from_params(
        cls,
        raw: Mapping[str, Any],
        contributions: Sequence[ApiParameterExtensionPoint] = (),
    ) -> Self:
        """Build a message from API (camelCase) parameters, coercing and validating each.

        ``contributions``: plugins' parameters of this API (see :mod:`core.kernel.api_params`),
        taken out of ``raw`` first and turned into system tags."""
        check_limits(cls.api_name, raw)
        raw = dict(raw)
        system_tags = string_list(raw.pop("systemTags", None) or [], cls.api_name, "systemTags")
        user_tags = string_list(raw.pop("userTags", None) or [], cls.api_name, "userTags")
        for ext in contributions:
            system_tags.extend(_contributed_tags(cls.api_name, ext, raw))
        unknown = sorted(set(raw) - set(cls.params))
        if unknown:
            names = ", ".join(cls.params) or "none"
            raise argerr(f"unknown parameter {unknown[0]} for {cls.api_name} (parameters: {names})")
        values: dict[str, Any] = {}
        for name, spec in cls.params.items():
            if name in raw and raw[name] is not None:
                values[spec.attr] = _coerce(cls.api_name, spec, raw[name])
            elif spec.spec.required:
                raise argerr(f"missing required parameter {name} of {cls.api_name}")
        msg = cls(**values)
        msg.system_tags = system_tags
        msg.user_tags = user_tags
        msg.validate()
        return msg

    def validate(self) -> None:
        """Check every parameter against its declared rules; raise argerr on the first breach."""
        for name, spec in self.params.items():
            value = getattr(self, spec.attr)
            if value is None:
                if spec.spec.required:
                    raise argerr(f"missing required parameter {name} of {self.api_name}")
                continue
            _check_value(self.api_name, spec, value)

    def to_params(self) -> dict[str, Any]:
        out = {name: getattr(self, spec.attr) for name, spec in self.params.items()}
        if self.system_tags:
            out["systemTags"] = list(self.system_tags)
        if self.user_tags:
            out["userTags"] = list(self.user_tags)
        return out

    def resource_uuids(self) -> list[tuple[str, str, str]]:
        """(parameter, resource type, uuid) for every parameter that names a resource."""
        found = []
        for name, spec in self.params.items():
            rtype = spec.spec.resource_type
            value = getattr(self, spec.attr)
            if rtype and value:
                for uuid in value if isinstance(value, list) else [value]:
                    found.append((name, rtype, uuid))
        return found

    def sync_signature(self) -> str | None:
        """Calls with the same signature run one at a time (ZStack's per-resource queue).

        None (the default) means the call runs concurrently with any other.
        """
        return None

    def __repr__(self) -> str:
        return f"{self.api_name}({self.to_params()!r})"


def _contributed_tags(api: str, ext: ApiParameterExtensionPoint, raw: dict[str, Any]) -> list[str]:
    """The system tags of ``ext``'s parameters in ``raw`` (taken out of it), each coerced
    and checked as a message's own parameter is."""
    values: dict[str, Any] = {}
    for name, spec in ext.api_params.items():
        value = raw.pop(name, None)
        if value is None:
            if spec.spec.required:
                raise argerr(f"missing required parameter {name} of {api}")
            continue
        values[name] = _check_value(api, spec, _coerce(api, spec, value))
    return ext.to_system_tags(values) if values else []


def check_limits(api: str, raw: Mapping[str, Any]) -> None:
    """Refuse parameters beyond what any API takes (see agentkit.bounded_json: nesting, number
    sizes), with an argerr naming the parameter, before anything else looks at them."""
    for name, value in raw.items():
        try:
            bounded_json.check(value, f"parameter {name} of {api}")
        except bounded_json.JsonLimitError as exc:
            raise argerr(str(exc)) from None


def bounded_params(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` fit to log: a parameter beyond the limits is replaced by a note."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            bounded_json.check(value)
            out[name] = value
        except bounded_json.JsonLimitError:
            out[name] = "(refused: beyond the limits)"
    return out


def _copy_default(default: Any) -> Any:
    return (
        list(default)
        if isinstance(default, list)
        else dict(default)
        if isinstance(default, dict)
        else default
    )


def string_list(value: Any, api: str, name: str) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise argerr(f"parameter {name} of {api} must be a list of strings")


def _coerce(api: str, spec: ParamSpec, value: Any) -> Any:
    """Values arrive typed (JSON) or as strings (zcli); both are accepted."""
    kind, name = spec.kind, spec.api_name
    bad = argerr(
        f"parameter {name} of {api} must be {_ARTICLE[kind]} {_KIND_NAMES[kind]},"
        f" got {_shown(value)}"
    )
    if kind is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise bad
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise bad
    if kind is int:
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif isinstance(value, str) and re.fullmatch(r"[+-]?\d{1,40}", value.strip()):
            number = int(value)
        elif isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip()):
            number = INT_RANGE[1] + 1  # too many digits to convert: out of range anyway
        if number is None:
            raise bad
        if not INT_RANGE[0] <= number <= INT_RANGE[1]:
            raise argerr(
                f"parameter {name} of {api} must be an integer in the range"
                f" [{INT_RANGE[0]}, {INT_RANGE[1]}]"
            )
        return number
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise bad
        try:
            number_f = float(value)
        except (ValueError, OverflowError):
            raise bad from None
        if not math.isfinite(number_f):
            raise argerr(f"parameter {name} of {api} must be a finite number, got {_shown(value)}")
        return number_f
    if kind is list:
        return string_list(value, api, name)
    if kind is dict:
        if isinstance(value, str):  # zcli: a JSON object
            try:
                value = bounded_json.loads(value, f"parameter {name} of {api}")
            except bounded_json.JsonLimitError as exc:
                raise argerr(str(exc)) from None
            except ValueError:
                raise bad from None
        if isinstance(value, dict):
            return value
        raise bad
    raise bad


def _shown(value: Any) -> str:
    """``value`` for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _check_value(api: str, spec: ParamSpec, value: Any) -> Any:
    """``value`` (not None) checked against ``spec``'s rules, each item of a list."""
    for item in value if spec.kind is list else [value]:
        _check(api, spec.api_name, spec.spec, item)
    if spec.spec.non_empty and not value:
        raise argerr(f"parameter {spec.api_name} of {api} must not be empty")
    return value


def _check(api: str, name: str, p: Param, value: Any) -> None:
    where = f"parameter {name} of {api}"
    if p.valid_values is not None and value not in p.valid_values:
        valid = ", ".join(str(v) for v in p.valid_values)
        raise argerr(f"{where} must be one of [{valid}], got {value!r}")
    if p.number_range is not None and isinstance(value, int | float):
        low, high = p.number_range
        if not low <= value <= high:
            raise argerr(f"{where} must be in the range [{_num(low)}, {_num(high)}], got {value}")
    if isinstance(value, str):
        if p.max_length is not None and len(value) > p.max_length:
            raise argerr(f"{where} is longer than {p.max_length} characters")
        if p.non_empty and not value.strip():
            raise argerr(f"{where} must not be empty")
        optional_and_empty = value == "" and not (p.required or p.non_empty)
        if p.regex is not None and not optional_and_empty and not re.fullmatch(p.regex, value):
            raise argerr(f"{where} must match {p.regex}, got {value!r}")


@dataclass
class QueryResult:
    """What a query handler returns: one page of inventories and, if asked, the total."""

    inventories: list[dict[str, Any]]
    total: int | None = None


@dataclass
class ApiReply:
    """An inventory (or a page of them) on success; an error code otherwise."""

    success: bool = True
    inventory: dict[str, Any] | None = None
    inventories: list[dict[str, Any]] | None = None
    total: int | None = None
    error: ErrorCode | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def failure(cls, error: ErrorCode) -> ApiReply:
        return cls(success=False, error=error)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"success": self.success}
        if self.error is not None:
            out["error"] = self.error.to_dict()
        if self.inventory is not None:
            out["inventory"] = self.inventory
        if self.inventories is not None:
            out["inventories"] = self.inventories
        if self.total is not None:
            out["total"] = self.total
        out.update(self.extra)
        return out

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ApiReply:
        known = {"success", "error", "inventory", "inventories", "total"}
        return cls(
            success=bool(raw.get("success")),
            inventory=raw.get("inventory"),
            inventories=raw.get("inventories"),
            total=raw.get("total"),
            error=ErrorCode.from_dict(raw["error"]) if raw.get("error") else None,
            extra={k: v for k, v in raw.items() if k not in known},
        )
