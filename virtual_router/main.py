"""``zstack-lite-vr-agent``: run the virtual-router appliance agent until SIGTERM or SIGINT.

The host agent starts it inside the appliance's namespace (``ip netns exec``);
``--simulate`` runs the same contract with no dnsmasq and no nft.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from agentkit.daemon import on_stop_signals, setup_logging
from contracts.virtual_router import LOG_FILE
from virtual_router.app import VrAgent


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


async def serve(args: argparse.Namespace) -> None:
    agent = VrAgent(args.data_dir, args.token_file, simulate=args.simulate)
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop)
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
    setup_logging(args.data_dir / LOG_FILE, args.log_level)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        logging.getLogger(__name__).error("cannot serve: %s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
