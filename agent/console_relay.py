"""``GET /vm/console/stream?vmUuid=``: a websocket onto a VM's serial console.

The framing (first a JSON text frame ``opened`` or ``error``, then the log tail and the
live output as binary frames, close codes saying why it ended) is contracts.kvm's
VM_CONSOLE_STREAM.  The console is opened before its log is read, so no output falls
between the two; a few bytes may appear in both (the log is written asynchronously).
The bearer token is checked by agentkit.server before this handler runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from aiohttp import web

from agent.backend import Backend
from agent.console import read_log_tail
from agent.fields import Fields
from agentkit.console_pump import close_reason, pump
from agentkit.errors import AgentError
from contracts.kvm import (
    CONSOLE_CLOSE_FAILED,
    CONSOLE_CLOSE_GOING_AWAY,
    CONSOLE_CLOSE_NORMAL,
    CONSOLE_HISTORY_BYTES,
)

log = logging.getLogger(__name__)

HEARTBEAT = 30.0
"""Seconds between pings, so a viewer that vanished is noticed and its console freed."""
MAX_INPUT = 64 * 1024


class ConsoleRelay:
    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._sockets: set[web.WebSocketResponse] = set()

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=MAX_INPUT)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._serve(ws, request.query.get("vmUuid", ""))
        finally:
            self._sockets.discard(ws)
        return ws

    async def shutdown(self) -> None:
        """Close every console websocket (on the server's shutdown: before it waits for
        handlers, which a websocket would otherwise keep busy)."""
        for ws in list(self._sockets):
            await ws.close(code=CONSOLE_CLOSE_GOING_AWAY, message=b"the agent is stopping")

    async def _serve(self, ws: web.WebSocketResponse, raw_uuid: str) -> None:
        try:
            vm_uuid = Fields({"vmUuid": raw_uuid}).vm_uuid()
            console = await self.backend.vm_console_open(vm_uuid)
        except AgentError as exc:
            await _refuse(ws, str(exc))
            return
        except Exception as exc:
            log.exception("cannot open the console of VM %s", raw_uuid)
            await _refuse(ws, f"cannot open the console of VM {raw_uuid}: {exc}")
            return
        log.info("console of VM %s opened", vm_uuid)
        try:
            history = await asyncio.to_thread(
                read_log_tail, console.log_path, CONSOLE_HISTORY_BYTES
            )
            await ws.send_json(
                {
                    "type": "opened",
                    "vmUuid": vm_uuid,
                    "consoleLogPath": console.log_path,
                    "history": len(history),
                }
            )
            if history:
                await ws.send_bytes(history)
            await pump(console, ws, dropped=(AgentError,))
        except ConnectionError as exc:
            log.info("the viewer of VM %s's console went away: %s", vm_uuid, exc)
        finally:
            await console.close()
            if not ws.closed:
                await ws.close(
                    code=console.close_code or CONSOLE_CLOSE_NORMAL,
                    message=close_reason(console.close_reason),
                )
            log.info("console of VM %s closed: %s", vm_uuid, console.close_reason)


async def _refuse(ws: web.WebSocketResponse, error: str) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.send_json({"type": "error", "error": error})
    await ws.close(code=CONSOLE_CLOSE_FAILED, message=close_reason(error))
