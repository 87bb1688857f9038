"""``zstack-lite-vr-agent``: run the virtual-router appliance agent until SIGTERM or SIGINT.

The host agent starts it inside the appliance's namespace (``ip netns exec``);
``--simulate`` runs the same contract with no dnsmasq and no nft.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from virtual_router.app import VrAgent
from virtual_router.protocol import LOG_FILE


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="zstack-lite-vr-agent", description="The ZStack Lite virtual-router appliance agent."
    )
    parser.add_argument("--socket", required=True, help="the Unix socket to listen on (0600)")
    parser.add_argument(
        "--data-dir", type=Path, required=True, help="dnsmasq's files, its leases and the log"
    )
    parser.add_argument(
        "--token-file", type=Path, required=True, help="the bearer token (made 0600 if missing)"
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "--simulate", action="store_true", help="keep state in memory; run no dnsmasq and no nft"
    )
    return parser.parse_args(argv)


def setup_logging(data_dir: Path, level: str) -> None:
    """Everything to ``<data_dir>/vr-agent.log``; warnings and errors to stderr as well."""
    data_dir.mkdir(parents=True, exist_ok=True)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler = logging.FileHandler(data_dir / LOG_FILE)
    handler.setFormatter(formatter)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    stderr.setLevel(logging.WARNING)
    root = logging.getLogger()
    root.handlers[:] = [handler, stderr]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("pyroute2").setLevel(logging.WARNING)  # every netlink message at DEBUG


async def serve(args: argparse.Namespace) -> None:
    agent = VrAgent(args.data_dir, args.token_file, simulate=args.simulate)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await agent.start(args.socket)
    logging.getLogger(__name__).info(
        "serving on %s%s", args.socket, " (simulated)" if args.simulate else ""
    )
    try:
        await stop.wait()
    finally:
        await agent.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.data_dir, args.log_level)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        logging.getLogger(__name__).error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
