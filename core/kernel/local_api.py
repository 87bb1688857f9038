"""The running node's local API: the bus served on ``<data_dir>/node.sock``.

``zcli`` (and a second ``ztui``) reach a node that already runs on the data
dir through this socket instead of opening the database themselves.  The
socket is mode 0600: only the owner of the data dir may drive the node.

Routes: ``GET /v1/apis`` lists every API with its parameters;
``POST /v1/api/<ApiName>`` with a JSON object of parameters answers an ApiReply.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from core.kernel.api import ApiMessage

if TYPE_CHECKING:
    from core.kernel.bus import ApiBus

SOCKET_NAME = "node.sock"
STOP_GRACE = 5.0
"""Seconds a stopping node keeps serving the connections it already has (bounded, as the
data dir stays locked meanwhile)."""


def describe_api(msg_type: type[ApiMessage]) -> dict[str, Any]:
    return {
        "name": msg_type.api_name,
        "description": (msg_type.__doc__ or "").strip().splitlines()[0] if msg_type.__doc__ else "",
        "readOnly": msg_type.read_only,
        "params": {name: spec.describe() for name, spec in msg_type.params.items()},
    }


class LocalApiServer:
    def __init__(self, bus: ApiBus, path: Path) -> None:
        self.bus = bus
        self.path = path
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/apis", self._apis)
        app.router.add_post("/v1/api/{name}", self._call)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        self.path.unlink(missing_ok=True)  # left by a node that died; we hold the lock now
        old_umask = os.umask(0o177)
        try:
            await web.UnixSite(self._runner, str(self.path)).start()
        finally:
            os.umask(old_umask)

    async def stop(self) -> None:
        # First the path: a client that comes from now on finds no socket and reconnects
        # (perhaps becoming the node).  A client that connected before gets its answer:
        # closing its connection unread would leave it unsure whether its call was made.
        self.path.unlink(missing_ok=True)
        if self._runner is None:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        await asyncio.sleep(0.01)  # accept the connections waiting in the listen backlog
        while (server := self._runner.server) is not None and server.connections:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        await self._runner.cleanup()
        self._runner = None

    async def _apis(self, _request: web.Request) -> web.Response:
        return web.json_response([describe_api(m) for m in self.bus.messages().values()])

    async def _call(self, request: web.Request) -> web.Response:
        try:
            params = await request.json()
        except ValueError:
            params = None
        if not isinstance(params, dict):
            return web.json_response(
                {
                    "success": False,
                    "error": {"code": "SYS.1007", "description": "the body must be a JSON object"},
                },
                status=400,
            )
        reply = await self.bus.call_by_name(request.match_info["name"], params)
        return web.json_response(reply.to_dict())
