"""Resources by name: a parameter declared with a resource type takes a name as well as a uuid.

A value of such a parameter (``imageUuid=tiny``, ``l3NetworkUuids=private,lab``)
that is not shaped as a uuid is a name.  An API whose ``uuid`` is the resource it acts on,
and that has no ``name`` parameter of its own, takes ``name=`` instead (``StopVmInstance
name=web2``).  A name must match exactly one resource of the type: none is refused naming
what was not found, several are refused with their uuids.  The bus resolves names (through
the type's ``Query`` API) before it builds the message, so a refused name changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from core.kernel.api import ApiMessage, string_list
from core.kernel.errors import ErrorCode, OperationError, SysErrors, argerr

UUID_SHAPE = re.compile(r"[0-9a-f]{32}")
"""What :func:`core.kernel.db.new_uuid` makes; any other value of a uuid parameter is a name."""
NAME = "name"
ALIASED = "uuid"

Lookup = Callable[[str, str], Awaitable[list[dict[str, Any]]]]
"""(resource type, name) -> the inventories of the resources of that type with that name."""


def name_alias(msg_type: type[ApiMessage]) -> str | None:
    """The parameter ``name=`` stands for in ``msg_type`` (``uuid``), or None."""
    spec = msg_type.params.get(ALIASED)
    if spec is None or not spec.spec.resource_type or NAME in msg_type.params:
        return None
    return ALIASED


def describe_alias(msg_type: type[ApiMessage]) -> dict[str, str]:
    """``{"name": <text>}`` for an API that takes ``name=`` instead of its uuid, else ``{}``
    (listed with the API's parameters by ``GET /v1/apis``)."""
    alias = name_alias(msg_type)
    if alias is None:
        return {}
    rtype = msg_type.params[alias].spec.resource_type
    return {NAME: f"string: the {rtype}'s name, instead of {alias}"}


async def resolve_names(
    msg_type: type[ApiMessage], params: Mapping[str, Any], lookup: Lookup
) -> dict[str, Any]:
    """``params`` with every resource given by name replaced by its uuid.  Values of other
    types are left for :meth:`ApiMessage.from_params` to refuse."""
    api = msg_type.api_name
    out = dict(params)
    given_as: dict[str, str] = {}  # parameter -> what the caller called it
    alias = name_alias(msg_type)
    if alias is not None and NAME in out:
        if out.get(alias) is not None:
            raise argerr(f"{api} takes {alias} or {NAME}, not both")
        out[alias] = out.pop(NAME)
        given_as[alias] = NAME
    found: dict[tuple[str, str], str] = {}

    async def uuid_of(pname: str, rtype: str, value: str) -> str:
        by_name = pname in given_as
        if value == "" or (not by_name and UUID_SHAPE.fullmatch(value)):
            return value
        if (rtype, value) not in found:
            matches = await lookup(rtype, value)
            found[rtype, value] = _one(api, given_as.get(pname, pname), rtype, value, matches)
        return found[rtype, value]

    for pname, spec in msg_type.params.items():
        rtype, value = spec.spec.resource_type, out.get(pname)
        if rtype is None or value is None:
            continue
        if spec.kind is list:
            items = string_list(value, api, pname)
            out[pname] = [await uuid_of(pname, rtype, item) for item in items]
        elif isinstance(value, str):
            out[pname] = await uuid_of(pname, rtype, value)
    return out


def _one(api: str, pname: str, rtype: str, name: str, matches: list[dict[str, Any]]) -> str:
    where = f"parameter {pname} of {api}"
    if not matches:
        raise OperationError(
            ErrorCode(SysErrors.RESOURCE_NOT_FOUND, f"{where}: no {rtype} is named {name!r}")
        )
    if len(matches) > 1:
        listed = ", ".join(
            f"{m['uuid']} ({m['state']})" if m.get("state") else str(m["uuid"]) for m in matches
        )
        raise argerr(
            f"{where}: {len(matches)} {rtype}s are named {name!r}: {listed}; give the uuid"
        )
    return str(matches[0]["uuid"])
