"""The ``zstack-lite-agent`` command: options, and a real process that stops cleanly."""

from __future__ import annotations

import asyncio
import signal
import socket
import stat
import sys
from pathlib import Path

from agent.acceleration import FixedAcceleration
from agent.libvirt_backend import LibvirtBackend
from agent.main import make_backend, parse_args
from agent.simulator_backend import SimulatorBackend
from contracts.kvm import TOKEN_FILE
from tests.agent.helpers import AgentCaller, wait_until

AGENT_BIN = Path(sys.executable).parent / "zstack-lite-agent"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_defaults_and_backends() -> None:
    args = parse_args([])
    assert (args.host, args.port, args.backend) == ("127.0.0.1", 7070, "libvirt")
    assert str(args.data_dir) == "/var/lib/zstack-lite/agent"
    assert args.libvirt_uri == "qemu:///system"
    backend = make_backend(
        parse_args(["--acceleration", "tcg", "--libvirt-uri", "test:///default"])
    )
    assert isinstance(backend, LibvirtBackend) and isinstance(backend.probe, FixedAcceleration)
    sim = make_backend(
        parse_args(["--backend", "simulator", "--sim-cpu", "4", "--sim-memory", "1024"])
    )
    assert isinstance(sim, SimulatorBackend)
    assert (sim.cpu_num, sim.total_memory) == (4, 1024)


async def test_the_agent_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    data_dir = tmp_path / "agent"
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(AGENT_BIN),
        "--backend",
        "simulator",
        "--sim-cpu",
        "3",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    caller: AgentCaller | None = None
    try:
        token_file = data_dir / TOKEN_FILE
        await wait_until(lambda: "listening" in _log(data_dir), 20, "the agent to listen")
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        caller = AgentCaller(f"http://127.0.0.1:{port}", token_file.read_text().strip())
        facts = await caller.ok("/host/connect", {"hostUuid": "h", "reportUrl": ""})
        assert (facts["cpuNum"], facts["hypervisorType"]) == (3, "Simulator")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert "agent stopped" in _log(data_dir)
    finally:
        if caller is not None:
            await caller.close()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def _log(data_dir: Path) -> str:
    path = data_dir / "agent.log"
    return path.read_text() if path.exists() else ""
