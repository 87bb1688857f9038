"""The ``zstack-lite-vr-agent`` command: options, and a --simulate process that stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import stat
import sys
from pathlib import Path

from contracts import virtual_router as p
from tests.virtual_router.helpers import VrClient, wait_for
from virtual_router.main import parse_args


def test_options() -> None:
    args = parse_args(["--socket", "/run/vr.sock", "--data-dir", "/d", "--token-file", "/t"])
    assert (args.socket, str(args.data_dir), str(args.token_file)) == ("/run/vr.sock", "/d", "/t")
    assert (args.log_level, args.simulate) == ("info", False)
    assert parse_args(
        ["--socket", "s", "--data-dir", "d", "--token-file", "t", "--simulate"]
    ).simulate


async def test_a_simulated_agent_process_serves_and_stops_on_sigterm(short_dir: Path) -> None:
    sock, data, token = short_dir / "vr.sock", short_dir / "data", short_dir / "token"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "virtual_router.main",
        "--socket",
        str(sock),
        "--data-dir",
        str(data),
        "--token-file",
        str(token),
        "--simulate",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    client: VrClient | None = None
    try:
        await wait_for(lambda: sock.is_socket(), 20, "the agent's socket")
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        assert stat.S_IMODE(token.stat().st_mode) == 0o600
        client = VrClient(str(sock), token.read_text().strip())
        await client.ok(p.INIT, {"uuid": "vr-9"})
        assert (await client.ok(p.PING))["uuid"] == "vr-9"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert "virtual-router agent stopped" in (data / p.LOG_FILE).read_text()
    finally:
        if client is not None:
            await client.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
