"""JSON from a peer, within limits: the one way every server of the project reads a request.

Python's ``json`` refuses an integer of more than 4,300 digits with a bare ValueError and
overflows its stack on deep nesting (a RecursionError, so an HTTP 500).  Here a number
literal may have at most :data:`MAX_NUMBER_CHARS` characters and be finite, containers may
nest :data:`MAX_DEPTH` levels, and a breach is a :class:`JsonLimitError` naming the field
and the limit.  The node's local API and REST facade, the host agent and the
virtual-router agent read request bodies with :func:`read_object`; the API bus checks
in-process parameters with :func:`check`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from aiohttp import web

MAX_DEPTH = 32
"""Containers (objects, lists) nested in one another, the outermost counting as 1."""
MAX_NUMBER_CHARS = 40
"""Characters of a number literal (sign, digits, point, exponent)."""
_INT_BOUND = 10**MAX_NUMBER_CHARS
BODY = "the body"


class JsonLimitError(ValueError):
    """A value breaks a limit; the message names the field and the limit."""


class BadJsonBody(ValueError):
    """A request body that is not a JSON object within the limits; the message says why."""


class _Refused:
    """A number the parser refused, kept so :func:`check` can name where it was."""

    def __init__(self, text: str, why: str) -> None:
        self.text = text
        self.why = why


def _parse_int(text: str) -> int | _Refused:
    if len(text) > MAX_NUMBER_CHARS:
        return _Refused(text, f"a number of {len(text)} characters")
    return int(text)


def _parse_float(text: str) -> float | _Refused:
    if len(text) > MAX_NUMBER_CHARS:
        return _Refused(text, f"a number of {len(text)} characters")
    value = float(text)
    return value if math.isfinite(value) else _Refused(text, f"{text}, not a finite number")


def _parse_constant(text: str) -> _Refused:
    return _Refused(text, f"{text}, not a finite number")


def loads(data: str | bytes, root: str = BODY) -> Any:
    """Parse ``data``; JsonLimitError on a breach, ValueError if it is not JSON.  ``root``
    names the whole value in messages."""
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    try:
        value = json.loads(
            data,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except RecursionError:
        # Deeper than the interpreter's stack: far beyond MAX_DEPTH.
        raise JsonLimitError(
            f"{_name(root, _deep_field(data))} nests deeper than {MAX_DEPTH} levels"
        ) from None
    check(value, root)
    return value


def check(value: Any, root: str = BODY) -> None:
    """Raise JsonLimitError if ``value`` (parsed JSON, or the same shapes built in Python)
    breaks a limit.  ``root`` names ``value`` itself in messages."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 1)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                where = _name(root, path[:1])
                raise JsonLimitError(f"{where} nests deeper than {MAX_DEPTH} levels")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            stack.extend((v, (*path, k), depth + 1) for k, v in pairs)
        elif isinstance(item, _Refused):
            raise JsonLimitError(f"{_name(root, path)} is {item.why}; {_LIMIT}")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) >= _INT_BOUND:
            raise JsonLimitError(f"{_name(root, path)} is an integer of more than {_LIMIT_DIGITS}")
        elif isinstance(item, float) and not math.isfinite(item):
            raise JsonLimitError(f"{_name(root, path)} is {item}, not a finite number")


_LIMIT = f"a number may have at most {MAX_NUMBER_CHARS} characters and must be finite"
_LIMIT_DIGITS = f"{MAX_NUMBER_CHARS} digits"


def _name(root: str, path: tuple[Any, ...]) -> str:
    if not path:
        return root
    text = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path).lstrip(".")
    if len(text) > 80:
        text = text[:77] + "..."
    return f"field {text!r}" if root == BODY else f"field {text!r} of {root}"


_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"(\s*:)?|[\[\]{}]')


def _deep_field(text: str) -> tuple[str, ...]:
    """The top-level key under which ``text`` nests deeper than MAX_DEPTH (() if the body
    itself does, or none is found): a scan of brackets and strings, for the message only."""
    depth = 0
    key: tuple[str, ...] = ()
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token in ("[", "{"):
            depth += 1
            if depth > MAX_DEPTH:
                return key
        elif token in ("]", "}"):
            depth -= 1
        elif match.group(1) and depth == 1:
            try:
                key = (json.loads(token[: match.start(1) - match.start()]),)
            except ValueError:
                key = ()
    return ()


async def read_object(request: web.Request) -> dict[str, Any]:
    """The request's body as a JSON object within the limits; BadJsonBody saying why not."""
    raw = await request.read()
    try:
        body = loads(raw)
    except JsonLimitError as exc:
        raise BadJsonBody(str(exc)) from None
    except UnicodeDecodeError:
        raise BadJsonBody("the body is not UTF-8") from None
    except ValueError as exc:
        raise BadJsonBody(f"the body is not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadJsonBody(f"the body must be a JSON object, not {_json_type(body)}")
    return body


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "a list", str: "a string", bool: "a boolean"}.get(type(value), "a number")
