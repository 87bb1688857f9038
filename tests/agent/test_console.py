"""The console websocket (``GET /vm/console/stream``) of an agent with the simulator backend."""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from agent.app import Agent
from agent.console import read_log_tail
from contracts.kvm import (
    CONSOLE_CLOSE_FAILED,
    CONSOLE_CLOSE_GOING_AWAY,
    CONSOLE_CLOSE_NORMAL,
    CONSOLE_CLOSE_TAKEN_OVER,
    CONSOLE_HISTORY_BYTES,
    VM_CONSOLE_STREAM,
)
from core.kernel.errors import OperationError
from core.kernel.http import JsonHttpClient
from tests.agent.helpers import AgentCaller
from tests.agent.test_simulator import start_body

VM = "vm-con"
Socket = aiohttp.ClientWebSocketResponse


@pytest.fixture
def root_volume(tmp_path: Path) -> Path:
    path = tmp_path / "root.qcow2"
    path.write_bytes(b"")
    return path


@pytest.fixture
async def running(connected: AgentCaller, root_volume: Path) -> Path:
    """A running VM ``VM``; its console log."""
    await connected.ok_async("/vm/start", start_body(VM, root_volume))
    return root_volume.parent / f"{VM}.log"


async def open_ws(caller: AgentCaller, vm_uuid: str = VM) -> Socket:
    return await caller.client.websocket(VM_CONSOLE_STREAM, {"vmUuid": vm_uuid}, 5, None)


async def first_frame(ws: Socket) -> dict:
    msg = await ws.receive(5)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return json.loads(msg.data)


async def read_until(ws: Socket, wanted: bytes) -> bytes:
    got = b""
    while wanted not in got:
        msg = await ws.receive(5)
        assert msg.type == aiohttp.WSMsgType.BINARY, (msg, got)
        got += msg.data
    return got


async def closed(ws: Socket) -> tuple[int | None, str]:
    """Read to the close frame: (code, reason)."""
    while True:
        msg = await ws.receive(5)
        if msg.type == aiohttp.WSMsgType.CLOSE:
            return msg.data, msg.extra
        assert msg.type == aiohttp.WSMsgType.BINARY, msg


async def test_log_tail_first_then_echo(connected: AgentCaller, running: Path) -> None:
    lines = [f"boot line {i:05d}".encode() for i in range(2000)]  # ~32 KiB
    with running.open("ab") as f:
        f.write(b"\n".join(lines) + b"\n")
    ws = await open_ws(connected)
    try:
        hello = await first_frame(ws)
        assert hello["type"] == "opened" and hello["vmUuid"] == VM
        assert hello["consoleLogPath"] == str(running)
        assert 0 < hello["history"] <= CONSOLE_HISTORY_BYTES
        history = await read_until(ws, lines[-1] + b"\n")
        assert len(history) == hello["history"]
        assert history.startswith(b"boot line ")  # from a line start
        assert running.read_bytes().endswith(history)

        await ws.send_bytes(b"echo hi\r")
        assert await read_until(ws, b"/ # ") == b"echo hi\r\n/ # "
        await ws.send_str("ab\x7fc\n")  # text frames are typed too; backspace erases
        assert await read_until(ws, b"/ # ") == b"ab\b \bc\r\n/ # "
        assert running.read_bytes().endswith(b"echo hi\nac\n")
    finally:
        await ws.close()


async def test_auth_is_refused_without_the_token(sim_agent: Agent, running: Path) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        client = JsonHttpClient(f"http://127.0.0.1:{sim_agent.port}", headers=headers)
        try:
            with pytest.raises(OperationError, match="refused with HTTP 401"):
                await client.websocket(VM_CONSOLE_STREAM, {"vmUuid": VM}, 5)
        finally:
            await client.close()


async def test_a_vm_not_running_or_unknown_is_refused(
    connected: AgentCaller, running: Path
) -> None:
    await connected.ok_async("/vm/stop", {"vmUuid": VM, "type": "cold"})
    for vm_uuid, message in (
        (VM, f"VM {VM} is Stopped; its console cannot be opened"),
        ("vm-none", "VM vm-none has no domain zsl-vm-none on this host"),
        ("../x", "field 'vmUuid' is not a VM uuid"),
    ):
        ws = await open_ws(connected, vm_uuid)
        try:
            hello = await first_frame(ws)
            assert hello["type"] == "error" and hello["error"].startswith(message), hello
            assert await closed(ws) == (CONSOLE_CLOSE_FAILED, hello["error"][:123])
        finally:
            await ws.close()


async def test_a_second_viewer_takes_over(connected: AgentCaller, running: Path) -> None:
    first = await open_ws(connected)
    second = await open_ws(connected)
    try:
        assert (await first_frame(first))["type"] == "opened"
        assert (await first_frame(second))["type"] == "opened"
        code, reason = await closed(first)
        assert code == CONSOLE_CLOSE_TAKEN_OVER
        assert reason == f"another viewer opened the console of VM {VM}"
        await second.send_bytes(b"x")
        assert (await read_until(second, b"x")).endswith(b"x")
    finally:
        await first.close()
        await second.close()


async def test_stopping_the_vm_ends_the_console(connected: AgentCaller, running: Path) -> None:
    ws = await open_ws(connected)
    try:
        assert (await first_frame(ws))["type"] == "opened"
        await connected.ok_async("/vm/stop", {"vmUuid": VM, "type": "force"})
        assert await closed(ws) == (
            CONSOLE_CLOSE_NORMAL,
            f"the console of VM {VM} closed (VM Stopped)",
        )
    finally:
        await ws.close()


async def test_paused_input_waits_for_resume(connected: AgentCaller, running: Path) -> None:
    ws = await open_ws(connected)
    try:
        assert (await first_frame(ws))["type"] == "opened"
        await read_until(ws, b"started\n")
        await connected.ok("/vm/pause", {"vmUuid": VM})
        await ws.send_bytes(b"late\r")
        with pytest.raises(TimeoutError):
            await ws.receive(0.3)
        await connected.ok("/vm/resume", {"vmUuid": VM})
        assert await read_until(ws, b"/ # ") == b"late\r\n/ # "
    finally:
        await ws.close()


async def test_the_agent_stopping_closes_consoles(
    sim_agent: Agent, connected: AgentCaller, running: Path
) -> None:
    ws = await open_ws(connected)
    try:
        assert (await first_frame(ws))["type"] == "opened"
        await sim_agent.stop()
        code, reason = await closed(ws)
        assert (code, reason) == (CONSOLE_CLOSE_GOING_AWAY, "the agent is stopping")
    finally:
        await ws.close()


def test_log_tail_starts_at_a_line(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    assert read_log_tail(str(log), 10) == b""  # no log yet
    assert read_log_tail("", 10) == b""
    log.write_bytes(b"one\ntwo\nthree\n")
    assert read_log_tail(str(log), 100) == b"one\ntwo\nthree\n"
    assert read_log_tail(str(log), 9) == b"three\n"  # "o\nthree\n" cut to the line start
