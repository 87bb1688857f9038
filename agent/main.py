"""``zstack-lite-agent``: run the KVM host agent until SIGTERM or SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from agent.acceleration import AccelerationProbe, FixedAcceleration
from agent.app import Agent
from agent.backend import Backend
from agent.lab import default_lab_dir
from agent.libvirt_backend import DEFAULT_URI, LibvirtBackend
from agent.simulator_backend import DEFAULT_CPU_NUM, DEFAULT_MEMORY, SimulatorBackend
from agentkit.daemon import on_stop_signals, setup_logging
from contracts.kvm import AGENT_PORT
from contracts.names import lab_id

DEFAULT_DATA_DIR = "/var/lib/zstack-lite/agent"
LOG_FILE = "agent.log"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="zstack-lite-agent", description="The ZStack Lite KVM host agent."
    )
    parser.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR))
    parser.add_argument(
        "--lab-dir",
        type=Path,
        default=None,
        help="the data dir of the management node this agent belongs to (its lab's identity; "
        "default: derived from --data-dir)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=AGENT_PORT)
    parser.add_argument("--backend", choices=("libvirt", "simulator"), default="libvirt")
    parser.add_argument("--libvirt-uri", default=DEFAULT_URI)
    parser.add_argument(
        "--acceleration",
        choices=("auto", "kvm", "tcg"),
        default="auto",
        help="auto: decide by a real KVM boot probe (the default)",
    )
    parser.add_argument("--sim-cpu", type=int, default=DEFAULT_CPU_NUM, help="simulator CPUs")
    parser.add_argument(
        "--sim-memory", type=int, default=DEFAULT_MEMORY, help="simulator memory in bytes"
    )
    parser.add_argument("--log-level", default="INFO")
    return parser.parse_args(argv)


def make_backend(args: argparse.Namespace) -> Backend:
    if args.backend == "simulator":
        return SimulatorBackend(cpu_num=args.sim_cpu, total_memory=args.sim_memory)
    probe = (
        AccelerationProbe() if args.acceleration == "auto" else FixedAcceleration(args.acceleration)
    )
    return LibvirtBackend(args.libvirt_uri, probe=probe)


async def serve(args: argparse.Namespace) -> None:
    lab_dir = args.lab_dir or default_lab_dir(args.data_dir)
    agent = Agent(make_backend(args), args.data_dir, lab=lab_id(lab_dir), lab_dir=lab_dir)
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop)
    await agent.start(args.host, args.port)
    logging.getLogger(__name__).info(
        "serving %s backend on %s:%d", args.backend, args.host, agent.port
    )
    try:
        await stop.wait()
    finally:
        await agent.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.data_dir / LOG_FILE, args.log_level)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        logging.getLogger(__name__).error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
