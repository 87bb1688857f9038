"""``zstack-lite``: the management node as a service.

    zstack-lite serve    run the node in the foreground (for a service manager)
    zstack-lite start    start it in the background; return once it is ready
    zstack-lite stop     stop it gracefully (and the agents it owns)
    zstack-lite status   pid, uptime, version, data dir, hosts and problems
    zstack-lite reset    remove everything the lab made, then its data dir

Exit status: 0 success; 1 failure; 2 usage; 3 (status) the node does not run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any

from core.daemon import control
from core.daemon.node_socket import NodeSocket, NodeUnreachable
from core.daemon.uptime import format_uptime
from core.kernel.data_dir import running_pid
from core.kernel.properties import Properties, PropertyError, add_config_argument, load

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = 0, 1, 2, 3


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="zstack-lite", description="The ZStack Lite management node service."
    )
    add_config_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the node in the foreground")
    serve.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    commands.add_parser("start", help="start the node in the background, return once ready")
    commands.add_parser("stop", help="stop the node gracefully, with the agents it owns")
    status = commands.add_parser("status", help="the node's pid, uptime, hosts and problems")
    status.add_argument("--json", action="store_true", help="print the status as JSON")
    reset = commands.add_parser(
        "reset", help="remove everything the lab made on this host, then its data dir"
    )
    reset.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser.parse_args(argv)


def cmd_serve(props: Properties, ns: argparse.Namespace) -> int:
    from core.daemon.serve import serve
    from core.kernel.logs import configure_logging

    configure_logging(props, stderr_level=logging.INFO if ns.ready_fd is None else None)
    return asyncio.run(serve(props, ns.ready_fd))


def cmd_start(props: Properties) -> int:
    started = control.start_detached(props)
    if started.by_us:
        print(f"management node started: pid {started.pid}, socket {started.socket}")
    else:
        print(f"management node already running: pid {started.pid}, socket {started.socket}")
    return EXIT_OK


def cmd_stop(props: Properties) -> int:
    print(f"stopping the management node on {props.data_dir} ...", flush=True)
    pid = control.stop_node(props)
    if pid is None:
        print(f"no management node runs on {props.data_dir}")
    else:
        print(f"management node (pid {pid}) stopped")
    return EXIT_OK


def print_status(status: dict[str, Any]) -> None:
    print(f"management node  running, pid {status['pid']}, up {format_uptime(status['uptime'])}")
    print(f"version          {status['version']}")
    print(f"data dir         {status['dataDir']}")
    print(f"socket           {status['socket']}")
    hosts = status.get("hosts", [])
    print(f"hosts            {len(hosts) or 'none'}")
    for host in hosts:
        print(
            f"  {host['name']:<20} {host['hypervisorType']:<10} {host['address']:<22} "
            f"{host['status']}"
        )
    problems = status.get("problems", [])
    if problems:
        print("problems")
        for problem in problems:
            print(f"  - {problem}")


def cmd_status(props: Properties, as_json: bool) -> int:
    pid = running_pid(props.data_dir)
    if pid is None:
        print(f"management node  not running (data dir {props.data_dir})")
        return EXIT_NOT_RUNNING
    try:
        _code, reply = NodeSocket(control.socket_of(props), timeout=30).post(
            "/v1/api/GetManagementNodeStatus", {}
        )
    except NodeUnreachable:
        print(f"management node  starting, pid {pid} (data dir {props.data_dir})")
        return EXIT_OK
    if not reply.get("success"):
        print(f"zstack-lite: the node answered an error: {reply.get('error')}", file=sys.stderr)
        return EXIT_FAILED
    status = reply["inventory"]
    if as_json:
        print(json.dumps(status, indent=2))
    else:
        print_status(status)
    return EXIT_OK


def cmd_reset(props: Properties, yes: bool) -> int:
    from core.daemon.reset import reset_lab

    if not yes:
        if not sys.stdin.isatty():
            print("zstack-lite: reset needs --yes when not run from a terminal", file=sys.stderr)
            return EXIT_USAGE
        answer = input(
            f"Remove every VM, router, network, disk and agent of the lab on {props.data_dir}, "
            "then the data dir itself? Type 'reset' to go on: "
        )
        if answer.strip() != "reset":
            print("nothing removed")
            return EXIT_FAILED
    return reset_lab(props)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        props = load(ns.config)
    except PropertyError as exc:
        print(f"zstack-lite: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if ns.command == "serve":
            return cmd_serve(props, ns)
        if ns.command == "start":
            return cmd_start(props)
        if ns.command == "stop":
            return cmd_stop(props)
        if ns.command == "status":
            return cmd_status(props, ns.json)
        return cmd_reset(props, ns.yes)
    except control.ControlError as exc:
        print(f"zstack-lite: {exc}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
