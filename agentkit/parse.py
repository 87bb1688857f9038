"""A command's JSON body read as its contract's request model, for handlers that take
their requests typed (pydantic) instead of through a field checker."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agentkit.errors import ArgumentError

M = TypeVar("M", bound=BaseModel)


def parse_request(model: type[M], body: dict[str, Any]) -> M:
    """``body`` as ``model``, or an ArgumentError (a 400) naming the first bad field by
    its wire name and saying what is wrong with it."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "the body"
        raise ArgumentError(f"field {where!r}: {first['msg']}") from None
