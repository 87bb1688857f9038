"""A command's JSON body read as its contract's request model, for handlers that take
their requests typed (pydantic) instead of through a field checker."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentkit.errors import ArgumentError

M = TypeVar("M", bound=BaseModel)


def parse_request(model: type[M], body: dict[str, Any], what: str = "") -> M:
    """``body`` as ``model``, or an ArgumentError (a 400) naming the first bad field by
    its wire name, what is wrong with it and (shortened) the value sent; ``what`` (e.g.
    "security groups") starts the message."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        got = repr(first.get("input"))
        got = got if len(got) <= 80 else got[:77] + "..."
        prefix = f"{what}: " if what else ""
        raise ArgumentError(f"{prefix}field {where!r}: {first['msg']} (got {got})") from None
