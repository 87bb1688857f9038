"""A VM's console through the core, on a simulator lab: the agent's websocket relayed
by open_vm_console, and the local socket's route (add_console_routes)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from contracts.kvm import CONSOLE_CLOSE_GOING_AWAY, CONSOLE_CLOSE_NORMAL, CONSOLE_CLOSE_TAKEN_OVER
from core.kernel.errors import OperationError, SysErrors
from core.vm.console import (
    VmConsoleStream,
    add_console_routes,
    open_console_over_socket,
    open_vm_console,
)
from core.vm.models import VmInstanceVO
from tests.conftest import ok
from tests.core.vm.conftest import Lab


async def create(lab: Lab) -> dict[str, Any]:
    return await ok(
        lab.node,
        "CreateVmInstance",
        name="vm1",
        instanceOfferingUuid=lab.offering["uuid"],
        imageUuid=lab.image_uuid,
    )


async def read_until(stream: VmConsoleStream, wanted: bytes) -> bytes:
    got = b""
    while wanted not in got:
        data = await stream.read()
        assert data, f"the console ended ({stream.close_code} {stream.close_reason}): {got!r}"
        got += data
    return got


async def test_open_type_read(lab: Lab) -> None:
    vm = await create(lab)
    async with await open_vm_console(lab.node, vm["uuid"]) as console:
        assert console.vm_uuid == vm["uuid"]
        assert console.history > 0
        history = await read_until(console, b"started\n")
        assert len(history) == console.history
        assert f"simulated VM {vm['uuid']} started".encode() in history
        await console.write(b"echo hi\r")
        assert await read_until(console, b"/ # ") == b"echo hi\r\n/ # "
    assert console.close_code == CONSOLE_CLOSE_NORMAL
    log = Path(console.console_log_path).read_text()
    assert log.endswith("echo hi\n")
    with pytest.raises(OperationError, match="has ended"):
        await console.write(b"x")
    assert await console.read() == b""


async def test_errors_are_clear(lab: Lab) -> None:
    with pytest.raises(OperationError) as missing:
        await open_vm_console(lab.node, "no-such-vm")
    assert missing.value.error.code == SysErrors.RESOURCE_NOT_FOUND
    vm = await create(lab)
    await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
    with pytest.raises(OperationError) as stopped:
        await open_vm_console(lab.node, vm["uuid"])
    assert stopped.value.error.code == SysErrors.INVALID_STATE
    assert stopped.value.error.description == (
        "VM vm1 is Stopped: only a Running or Paused VM has a console to open"
    )


async def test_the_agent_refusing_is_an_operation_error(lab: Lab) -> None:
    """The VM's record says Running but its host's domain is gone (as after a crash the
    core has not heard of yet): the agent's message reaches the caller."""
    vm = await create(lab)
    await lab.node.call("DestroyVmInstance", {"uuid": vm["uuid"]})

    def running_again(session: Any) -> None:
        row = session.get(VmInstanceVO, vm["uuid"])
        row.state, row.host_uuid = "Running", lab.host["uuid"]

    await lab.node.db.run(running_again)
    with pytest.raises(OperationError) as refused:
        await open_vm_console(lab.node, vm["uuid"])
    assert refused.value.error.description.startswith("cannot open the console of VM vm1 on host")
    assert f"has no domain zsl-{vm['uuid']}" in refused.value.error.details


async def test_stop_ends_the_stream_and_a_second_viewer_takes_over(lab: Lab) -> None:
    vm = await create(lab)
    first = await open_vm_console(lab.node, vm["uuid"])
    second = await open_vm_console(lab.node, vm["uuid"])
    try:
        while await first.read():
            pass
        assert first.close_code == CONSOLE_CLOSE_TAKEN_OVER
        await read_until(second, b"started\n")
        await ok(lab.node, "PauseVmInstance", uuid=vm["uuid"])  # a paused VM keeps its console
        await ok(lab.node, "ResumeVmInstance", uuid=vm["uuid"])
        await second.write(b"ls\n")
        await read_until(second, b"ls\r\n/ # ")
        await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
        while await second.read():
            pass
        assert second.close_code == CONSOLE_CLOSE_NORMAL
        assert second.close_reason == f"the console of VM {vm['uuid']} closed (VM Stopped)"
    finally:
        await first.close()
        await second.close()


@pytest.fixture
async def socket_path(lab: Lab) -> AsyncIterator[str]:
    """The console route on a Unix socket of its own (a short path: sun_path is small)."""
    directory = tempfile.mkdtemp(prefix="zsl-con-")
    app = web.Application()
    add_console_routes(app, lab.node)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    path = f"{directory}/node.sock"
    await web.UnixSite(runner, path).start()
    try:
        yield path
    finally:
        await runner.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


async def test_the_socket_route_relays_the_console(lab: Lab, socket_path: str) -> None:
    vm = await create(lab)
    async with await open_console_over_socket(socket_path, vm["uuid"]) as console:
        assert console.history > 0
        await read_until(console, b"started\n")
        await console.write(b"uname\r")
        assert await read_until(console, b"/ # ") == b"uname\r\n/ # "
        await ok(lab.node, "StopVmInstance", uuid=vm["uuid"])
        while await console.read():
            pass
        assert console.close_code == CONSOLE_CLOSE_NORMAL
        assert console.close_reason == f"the console of VM {vm['uuid']} closed (VM Stopped)"


async def test_the_socket_route_keeps_the_error_code(lab: Lab, socket_path: str) -> None:
    with pytest.raises(OperationError) as missing:
        await open_console_over_socket(socket_path, "no-such-vm")
    assert missing.value.error.code == SysErrors.RESOURCE_NOT_FOUND
    assert missing.value.error.description == "VmInstanceVO[uuid:no-such-vm] is not found"


async def test_the_node_socket_stopping_closes_its_consoles(lab: Lab) -> None:
    vm = await create(lab)
    directory = tempfile.mkdtemp(prefix="zsl-con-")
    app = web.Application()
    add_console_routes(app, lab.node)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.UnixSite(runner, f"{directory}/node.sock").start()
        console = await open_console_over_socket(f"{directory}/node.sock", vm["uuid"])
        await runner.cleanup()
        while await console.read():
            pass
        assert console.close_code == CONSOLE_CLOSE_GOING_AWAY
        await console.close()
        # The agent let go of the console: it opens again at once.
        again = await open_vm_console(lab.node, vm["uuid"])
        await again.close()
    finally:
        await runner.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
