"""zcli: every API of the node from the shell, ZStack-CLI style.

    zcli [--config PATH] [--no-start] [--output table|json|yaml] <ApiName> key=value ...
    zcli help                 list every API
    zcli help <ApiName>       its parameters
    zcli completion bash|zsh  a completion script: ``source <(zcli completion bash)``

zcli is a client of the management node service: it sends its call over
``<data_dir>/node.sock`` and, when no node runs there, starts the service
(detached, and says so once on stderr); ``--no-start`` fails instead.  It
imports only what a client needs (no database, libvirt or UI code), so a call
costs little more than Python's start-up.  ``zcli help`` never starts a node.

The verbs are the node's API list (nothing is kept by hand).  List values are
comma-separated (``systemTags=a::b,c``).  A parameter that takes the uuid of one
kind of resource takes its name too (``imageUuid=tiny``, and ``StopVmInstance
name=web2`` for ``uuid=``): the node resolves names, and refuses one that matches
several resources or none.  For ``Query<Resource>`` APIs every argument that is
not one of the query's own parameters is a condition: ``name=web1``,
``cpuNum>=2``, ``state?=Running,Stopped``, ``'description is null'``.

Prints the reply as a table on a terminal, as the node's JSON otherwise (or as
``--output`` says; errors go to stderr in every format).  Exit status: 0 success,
1 the API answered an error (code and description on stderr), 2 a usage error,
3 no node runs (with ``--no-start``) or none could be started.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from core.daemon.control import ControlError, ensure_running, socket_of
from core.daemon.node_socket import SUCCESS_HEADER, NodeSocket, NodeUnreachable
from core.kernel.properties import Properties, PropertyError, add_config_argument, load

if TYPE_CHECKING:
    from core.kernel.errors import ErrorCode

EXIT_OK, EXIT_API_ERROR, EXIT_USAGE, EXIT_NO_NODE = 0, 1, 2, 3
OUTPUTS = ("table", "json", "yaml")
TAG_PARAMS = ("systemTags", "userTags")
"""Taken by every API that creates a resource (tags for it); lists, comma-separated."""


class UsageError(Exception):
    pass


class NoNode(Exception):
    pass


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="zcli",
        description="Call ZStack Lite APIs. 'zcli help' lists them.",
    )
    add_config_argument(parser)
    parser.add_argument(
        "--no-start",
        action="store_true",
        help="fail when no management node runs, instead of starting one",
    )
    parser.add_argument(
        "-o",
        "--output",
        choices=OUTPUTS,
        help="how to print the reply (default: table on a terminal, json otherwise)",
    )
    parser.add_argument("api", help="an API name, 'help' or 'completion'")
    parser.add_argument("args", nargs="*", help="key=value parameters")
    return parser.parse_args(argv)


def takes_tags(api: dict[str, Any]) -> bool:
    return str(api["name"]).startswith(("Create", "Add"))


def is_query(api: dict[str, Any]) -> bool:
    """A ``Query<Resource>`` API: its arguments are conditions."""
    return str(api["name"]).startswith("Query") and "conditions" in api["params"]


def build_params(api: dict[str, Any], args: list[str]) -> dict[str, Any]:
    """zcli arguments -> API parameters (conditions for queries)."""
    from core.kernel.conditions import Condition  # here: most calls are no queries
    from core.kernel.errors import OperationError

    params: dict[str, Any] = {}
    query = is_query(api)
    conditions: list[str] = []
    for arg in args:
        if query:
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
        if key in TAG_PARAMS and takes_tags(api):
            params[key] = [v for v in value.split(",") if v]
            continue
        if key not in api["params"]:
            names = ", ".join([*api["params"], *(TAG_PARAMS if takes_tags(api) else ())])
            raise UsageError(
                f"{api['name']} has no parameter {key} (parameters: {names or 'none'})"
            )
        params[key] = value
    if conditions:
        params["conditions"] = conditions
    return params


def format_error(error: ErrorCode) -> str:
    """An error and its causes, one line each."""
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
    if takes_tags(api):
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


def api_list(props: Properties) -> list[dict[str, Any]]:
    """The running node's API list, or, when none runs, the installed plugins' (no node is
    started for it)."""
    node_socket = NodeSocket(socket_of(props), timeout=10)
    try:
        _status, apis = node_socket.get("/v1/apis")
    except (NodeUnreachable, OSError):
        from core.kernel.local_api import describe_installed_apis

        apis = describe_installed_apis(props["plugins.enabled"], props["plugins.disabled"])
    return list(apis)


def help_command(props: Properties, args: list[str]) -> int:
    if len(args) > 1:
        raise UsageError("usage: zcli help [ApiName]")
    return print_help(api_list(props), args[0] if args else None)


def completion_command(props: Properties, args: list[str]) -> int:
    from core.zcli_completion import SHELLS, script

    if len(args) != 1 or args[0] not in SHELLS:
        raise UsageError(f"usage: zcli completion {'|'.join(SHELLS)}")
    apis = {
        api["name"]: [
            *(p for p in api["params"] if not (is_query(api) and p == "conditions")),
            *(TAG_PARAMS if takes_tags(api) else ()),
        ]
        for api in api_list(props)
    }
    print(script(args[0], apis), end="")
    return EXIT_OK


def attach(props: Properties, start: bool) -> NodeSocket:
    """The node's socket, the node started first if needed (and allowed)."""
    node_socket = NodeSocket(socket_of(props))
    if not start:
        if not node_socket.answers():
            raise NoNode(
                f"no management node runs on {props.data_dir}; start it with "
                "`zstack-lite start` (or call zcli without --no-start)"
            )
        return node_socket
    try:
        ensure_running(props, announce=lambda text: print(f"zcli: {text}", file=sys.stderr))
    except ControlError as exc:
        raise NoNode(f"cannot start the management node: {exc}") from None
    return node_socket


def call(props: Properties, ns: argparse.Namespace) -> int:
    node_socket = attach(props, not ns.no_start)
    status, api = node_socket.get(f"/v1/apis/{ns.api}")
    if status == 404:
        raise UsageError(f"no API named {ns.api}; 'zcli help' lists them")
    params = build_params(api, ns.args)
    answer = node_socket.exchange("POST", f"/v1/api/{ns.api}?indent=2", params)
    success = answer.headers.get(SUCCESS_HEADER) == "true"
    output = ns.output or ("table" if sys.stdout.isatty() else "json")
    reply = {} if success and output == "json" else answer.json() or {}
    if output == "json":
        sys.stdout.buffer.write(answer.body)  # the reply as the node formatted it
    elif output == "yaml":
        from core.zcli_output import to_yaml

        sys.stdout.write(to_yaml(reply))
    elif success:
        from core.zcli_output import render_table

        sys.stdout.write(render_table(ns.api, reply))
    sys.stdout.flush()
    if not success:
        from core.kernel.errors import ErrorCode

        print(format_error(ErrorCode.from_dict(reply.get("error") or {})), file=sys.stderr)
        return EXIT_API_ERROR
    return EXIT_OK


def run(ns: argparse.Namespace) -> int:
    props = load(ns.config)
    if ns.api == "help":
        return help_command(props, ns.args)
    if ns.api == "completion":
        return completion_command(props, ns.args)
    try:
        return call(props, ns)
    except NodeUnreachable:
        # The node went away before the request was sent (it was stopping): once more.
        return call(props, ns)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(ns)
    except (UsageError, PropertyError) as exc:
        print(f"zcli: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (NoNode, NodeUnreachable) as exc:
        print(f"zcli: {exc}", file=sys.stderr)
        return EXIT_NO_NODE


if __name__ == "__main__":
    sys.exit(main())
