"""An agent that dies while it runs an async command: the call fails within seconds, naming
the agent, instead of waiting for its timeout; the operation rolls back."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from core.image.models import ImageVO
from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.host.test_hosts import simulator_pid
from tests.core.vm.conftest import Lab, make_lab


class StallingServer:
    """Serves an image that starts to arrive, then stalls until the test ends."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _image(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(64 * 1024 * 1024)})
        await response.prepare(request)
        await response.write(b"\0" * 65536)
        self.started.set()
        await self.release.wait()
        return response

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/stall.qcow2", self._image)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/stall.qcow2"

    async def stop(self) -> None:
        self.release.set()
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def stalling() -> AsyncIterator[StallingServer]:
    server = StallingServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
async def lab(node: ManagementNode, tmp_path: Path) -> Lab:
    return await make_lab(node, tmp_path)


async def test_agent_killed_during_a_download_fails_the_call_within_seconds(
    lab: Lab, stalling: StallingServer
) -> None:
    node = lab.node
    pid = simulator_pid(node, lab.host["uuid"])
    call = asyncio.create_task(node.call("AddImage", {"name": "stall", "url": stalling.url}))
    await asyncio.wait_for(stalling.started.wait(), 30)  # the agent is downloading
    t0 = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    reply = await asyncio.wait_for(call, 60)  # the API's own timeout would be far longer
    assert time.monotonic() - t0 < 30
    assert not reply.success and reply.error is not None
    text = str(reply.error.to_dict())
    gone = f"the agent of host sim (127.0.0.1:{lab.host['agentPort']}) went away"
    assert f"{gone} during /image/download" in text, text
    # rolled back: no image record is left, only the one the lab made
    images = await node.db.run(  # type: ignore[union-attr]
        lambda s: [i.name for i in s.query(ImageVO)]
    )
    assert images == ["base"]
    assert [i["name"] for i in await ok(node, "QueryImage")] == ["base"]
