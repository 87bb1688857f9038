"""zcli: every API of the node from the shell, ZStack-CLI style.

    zcli [--config PATH] <ApiName> key=value ...
    zcli help                 list every API
    zcli help <ApiName>       its parameters

The verbs are the bus's API list (nothing is kept by hand).  List values are
comma-separated (``systemTags=a::b,c``).  For ``Query<Resource>`` APIs every
argument that is not one of the query's own parameters is a condition:
``name=web1``, ``cpuNum>=2``, ``state?=Running,Stopped``, ``'description is null'``.

Prints the reply as JSON.  Exit status: 0 success, 1 the API answered an
error (code and description on stderr), 2 a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from typing import Any

from core.client import NodeClient, connect
from core.kernel.errors import ErrorCode, OperationError
from core.kernel.extensions import PluginError
from core.kernel.http import UnreachableError
from core.kernel.logs import configure_logging
from core.kernel.node import NodeError
from core.kernel.properties import PropertyError, add_config_argument, load
from core.kernel.query import Condition

EXIT_OK, EXIT_API_ERROR, EXIT_USAGE = 0, 1, 2
QUERY_PARAMS = (
    "limit",
    "start",
    "count",
    "replyWithCount",
    "sortBy",
    "sortDirection",
    "conditions",
)


class UsageError(Exception):
    pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="zcli",
        description="Call ZStack Lite APIs. 'zcli help' lists them.",
    )
    add_config_argument(parser)
    parser.add_argument("api", help="an API name, or 'help'")
    parser.add_argument("args", nargs="*", help="key=value parameters")
    return parser.parse_args(argv)


def build_params(api: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """zcli arguments -> API parameters (conditions for queries)."""
    params: dict[str, Any] = {}
    is_query = api["name"].startswith("Query") and "conditions" in api["params"]
    conditions: list[str] = []
    for arg in args:
        if is_query:
            try:
                cond = Condition.parse(arg)
            except OperationError as exc:
                raise UsageError(exc.error.description) from None
            if cond.op == "=" and cond.field in api["params"]:
                params[cond.field] = cond.value
            else:
                conditions.append(arg)
            continue
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise UsageError(f"argument {arg!r} is not of the form key=value")
        if key not in api["params"]:
            names = ", ".join(api["params"]) or "none"
            raise UsageError(f"{api['name']} has no parameter {key} (parameters: {names})")
        params[key] = value
    if conditions:
        params["conditions"] = conditions
    return params


def format_error(error: ErrorCode) -> str:
    lines = []
    for depth, err in enumerate(error.causes()):
        prefix = "Error" if depth == 0 else "  " * depth + "caused by"
        line = f"{prefix} {err.code}: {err.description}"
        if err.details:
            line += f" ({err.details})"
        if err.location:
            line += f" [at {err.location}]"
        lines.append(line)
    return "\n".join(lines)


def print_help(apis: list[dict[str, Any]], name: str | None) -> int:
    if name is None:
        width = max(len(a["name"]) for a in apis)
        print("zcli <ApiName> key=value ...    (zcli help <ApiName> for its parameters)\n")
        for api in apis:
            print(f"  {api['name']:<{width}}  {api['description']}")
        return EXIT_OK
    api = next((a for a in apis if a["name"] == name), None)
    if api is None:
        print(f"zcli: no API named {name}; 'zcli help' lists them", file=sys.stderr)
        return EXIT_USAGE
    print(f"{api['name']}: {api['description']}\n")
    if not api["params"]:
        print("  (no parameters)")
    width = max((len(p) for p in api["params"]), default=0)
    for pname, text in api["params"].items():
        print(f"  {pname:<{width}}  {text}")
    if api["name"].startswith(("Create", "Add")):
        width = max(width, len("systemTags"))
        print(f"  {'systemTags':<{width}}  list: system tags for the resource this creates")
        print(f"  {'userTags':<{width}}  list: user tags for the resource this creates")
    if api["name"].startswith("Query"):
        print(
            "\nOther arguments are conditions: field=value, field!=value, field>value, "
            "field>=value,\nfield<value, field<=value, field?=a,b (in), field!?=a,b (not in), "
            "field~=pat% (like),\nfield!~=pat%, 'field is null', 'field not null'."
        )
    return EXIT_OK


async def run(ns: argparse.Namespace) -> int:
    props = load(ns.config)
    configure_logging(props, stderr_level=logging.WARNING)
    client: NodeClient = await connect(props)
    try:
        apis = await client.apis()
        if ns.api == "help":
            if len(ns.args) > 1:
                raise UsageError("usage: zcli help [ApiName]")
            return print_help(apis, ns.args[0] if ns.args else None)
        api = next((a for a in apis if a["name"] == ns.api), None)
        if api is None:
            raise UsageError(f"no API named {ns.api}; 'zcli help' lists them")
        reply = await client.call(ns.api, build_params(api, ns.args))
        print(json.dumps(reply.to_dict(), indent=2, default=str))
        if not reply.success:
            assert reply.error is not None
            print(format_error(reply.error), file=sys.stderr)
            return EXIT_API_ERROR
        return EXIT_OK
    finally:
        await client.close()


async def run_until_reached(ns: argparse.Namespace, wait: float = 30.0) -> int:
    """:func:`run`, again if the node it attached to was gone before a request reached it.

    Another zcli's in-process node lives only as long as that zcli's call, so a zcli
    attached to it may find it gone.  Nothing was sent then: connecting again (perhaps
    becoming the node) and repeating is safe.
    """
    deadline = time.monotonic() + wait
    while True:
        try:
            return await run(ns)
        except UnreachableError:
            if time.monotonic() > deadline:
                raise


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return asyncio.run(run_until_reached(ns))
    except UsageError as exc:
        print(f"zcli: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (PropertyError, PluginError, NodeError) as exc:
        print(f"zcli: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OperationError as exc:
        print(format_error(exc.error), file=sys.stderr)
        return EXIT_API_ERROR


if __name__ == "__main__":
    sys.exit(main())
