"""A VM's serial console as a byte stream, for the TUI: core -> host agent -> libvirt.

:func:`open_vm_console` checks the VM and opens the host agent's console websocket
(contracts.kvm VM_CONSOLE_STREAM).  :func:`add_console_routes` serves the same stream on
the node's local socket (``GET /v1/console/{vmUuid}``, a websocket), so a ztui attached
to another process's node can open it with :func:`open_console_over_socket`.

Both websockets have the agent's framing: a first JSON text frame, ``{"type": "opened",
"vmUuid", "consoleLogPath", "history"}`` or ``{"type": "error", "error": ...}`` (then a
close with CONSOLE_CLOSE_FAILED); then binary frames both ways (output: the last
``history`` bytes of the console log, then the live output; input: what the user
types).  The close code says why a console ended: CONSOLE_CLOSE_NORMAL (the VM stopped,
or the viewer closed), CONSOLE_CLOSE_TAKEN_OVER (another viewer opened it: one viewer
per VM), CONSOLE_CLOSE_GOING_AWAY (the agent or node is stopping), CONSOLE_CLOSE_FAILED.
On the local socket the error is the ErrorCode's dict, so the caller gets the same
OperationError as in-process.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import aiohttp
from aiohttp import WSMsgType, web
from sqlalchemy.orm import Session

from agentkit.console_pump import close_reason, pump
from contracts import kvm
from core.host.plugin import HostPlugin
from core.kernel.errors import (
    ErrorCode,
    OperationError,
    SysErrors,
    error_from_exception,
    not_found,
    operr,
)
from core.kernel.http import JsonHttpClient
from core.vm import state as st
from core.vm.models import VmInstanceVO

log = logging.getLogger(__name__)

CONSOLE_STATES = (st.RUNNING, st.PAUSED)
OPEN_TIMEOUT = 30.0
HEARTBEAT = 30.0
ABNORMAL_CLOSURE = 1006
"""The websocket code for a connection lost without a close frame."""


class VmConsoleStream:
    """The viewer's end of a VM's serial console.  One task may read while others write.

    ``history`` is how many of the first bytes read come from the console log (what the
    console printed before it was opened); ``close_code`` and ``close_reason`` say why it
    ended once :meth:`read` answered b""."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        http: JsonHttpClient,
        vm_uuid: str,
        opened: dict[str, Any],
    ) -> None:
        self._ws = ws
        self._http = http
        self.vm_uuid = vm_uuid
        self.console_log_path = str(opened.get("consoleLogPath", ""))
        self.history = int(opened.get("history", 0))
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    async def handshake(
        cls,
        http: JsonHttpClient,
        ws: aiohttp.ClientWebSocketResponse,
        vm_uuid: str,
        refused: Callable[[Any], OperationError],
    ) -> VmConsoleStream:
        """Wait for the websocket's first frame: the stream, or ``refused(error)`` raised
        if the far end could not open the console (``ws`` and ``http`` then closed)."""
        try:
            try:
                first = await ws.receive(OPEN_TIMEOUT)
            except TimeoutError:
                raise OperationError(
                    ErrorCode(
                        SysErrors.TIMEOUT,
                        f"the console of VM {vm_uuid} did not open within {OPEN_TIMEOUT:g}s",
                    )
                ) from None
            hello = _control(first)
            if hello.get("type") == "opened":
                return cls(ws, http, vm_uuid, hello)
            if hello.get("type") == "error":
                raise refused(hello.get("error"))
            raise operr(
                f"the console of VM {vm_uuid} closed before it opened",
                f"close code {ws.close_code}: {first.extra or first.data!r}",
            )
        except BaseException:
            await ws.close()
            await http.close()
            raise

    @property
    def ended(self) -> bool:
        return self.close_code is not None

    async def read(self) -> bytes:
        """The next output; b"" once the console ended (then see close_code, close_reason)."""
        while not self.ended:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                if msg.data:
                    return bytes(msg.data)
            elif msg.type == WSMsgType.TEXT:
                continue  # no control frame follows "opened" today; later ones are skipped
            elif msg.type == WSMsgType.CLOSE:
                self._end(int(msg.data), str(msg.extra or ""))
            elif msg.type == WSMsgType.ERROR:
                self._end(ABNORMAL_CLOSURE, f"the console connection failed: {msg.data}")
            else:  # CLOSING, CLOSED
                code = self._ws.close_code
                self._end(code or ABNORMAL_CLOSURE, "" if code else "the connection was lost")
        return b""

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the console."""
        if self.ended or self._ws.closed:
            raise operr(f"the console of VM {self.vm_uuid} has ended", self.close_reason)
        try:
            await self._ws.send_bytes(data)
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise operr(f"cannot type into the console of VM {self.vm_uuid}", str(exc)) from None

    async def close(self) -> None:
        """Close the console (the far end lets go of it); idempotent."""
        self._end(kvm.CONSOLE_CLOSE_NORMAL, "closed by the viewer")
        try:
            if not self._ws.closed:
                await self._ws.close()
        finally:
            await self._http.close()

    async def __aenter__(self) -> VmConsoleStream:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    def _end(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason


def _control(msg: aiohttp.WSMessage) -> dict[str, Any]:
    """A JSON text frame as a dict ({} for anything else)."""
    if msg.type != WSMsgType.TEXT:
        return {}
    try:
        value = json.loads(msg.data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- opening --------------------------------------------------------------------------


async def open_vm_console(node: Any, vm_uuid: str) -> VmConsoleStream:
    """The serial console of a Running or Paused VM, through its host's agent."""

    def load(session: Session) -> tuple[str, str, str]:
        vm = session.get(VmInstanceVO, vm_uuid)
        if vm is None:
            raise not_found("VmInstanceVO", vm_uuid)
        return vm.name, vm.state, vm.host_uuid or ""

    name, state, host_uuid = await node.db.run(load)
    if state not in CONSOLE_STATES or not host_uuid:
        raise OperationError(
            ErrorCode(
                SysErrors.INVALID_STATE,
                f"VM {name} is {state}: only a Running or Paused VM has a console to open",
            )
        )
    agent = await node.plugin(HostPlugin).agent_of(host_uuid)
    http = JsonHttpClient(agent.url, headers={"Authorization": f"Bearer {agent.token}"})

    try:
        ws = await http.websocket(
            kvm.VM_CONSOLE_STREAM, {"vmUuid": vm_uuid}, OPEN_TIMEOUT, HEARTBEAT
        )
    except OperationError as exc:
        await http.close()
        raise operr(f"cannot open the console of VM {name}", cause=exc.error) from None

    def refused(error: Any) -> OperationError:
        return operr(f"cannot open the console of VM {name} on {agent.what}", str(error))

    return await VmConsoleStream.handshake(http, ws, vm_uuid, refused)


async def open_console_over_socket(socket_path: str, vm_uuid: str) -> VmConsoleStream:
    """The serial console of a VM, through the local socket of the node serving it."""

    def refused(error: Any) -> OperationError:
        if isinstance(error, dict) and "code" in error:
            return OperationError(ErrorCode.from_dict(error))
        return operr(f"cannot open the console of VM {vm_uuid}", str(error))

    http = JsonHttpClient("http://localhost", unix_socket=socket_path)
    try:
        ws = await http.websocket(f"/v1/console/{quote(vm_uuid, safe='')}", None, OPEN_TIMEOUT)
    except OperationError:
        await http.close()
        raise
    return await VmConsoleStream.handshake(http, ws, vm_uuid, refused)


# -- the local socket's route ---------------------------------------------------------


def add_console_routes(app: web.Application, node: Any) -> None:
    """``GET /v1/console/{vmUuid}``: a websocket relaying :func:`open_vm_console`.  Call
    before the app starts (it also hooks the app's shutdown to close open consoles)."""
    relay = _ConsoleRoute(node)
    app.router.add_get("/v1/console/{vmUuid}", relay.handle)
    app.on_shutdown.append(relay.shutdown)


class _ConsoleRoute:
    def __init__(self, node: Any) -> None:
        self.node = node
        self._sockets: set[web.WebSocketResponse] = set()

    async def shutdown(self, _app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(
                code=kvm.CONSOLE_CLOSE_GOING_AWAY,
                message=b"the management node is stopping",
            )

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(heartbeat=HEARTBEAT, max_msg_size=64 * 1024)
        await ws.prepare(request)
        self._sockets.add(ws)
        try:
            await self._serve(ws, request.match_info["vmUuid"])
        finally:
            self._sockets.discard(ws)
        return ws

    async def _serve(self, ws: web.WebSocketResponse, vm_uuid: str) -> None:
        try:
            stream = await open_vm_console(self.node, vm_uuid)
        except Exception as exc:
            error = error_from_exception(exc)
            if not isinstance(exc, OperationError):
                log.exception("cannot open the console of VM %s", vm_uuid)
            with contextlib.suppress(ConnectionError):
                await ws.send_json({"type": "error", "error": error.to_dict()})
            await ws.close(code=kvm.CONSOLE_CLOSE_FAILED, message=close_reason(error.description))
            return
        try:
            await ws.send_json(
                {
                    "type": "opened",
                    "vmUuid": vm_uuid,
                    "consoleLogPath": stream.console_log_path,
                    "history": stream.history,
                }
            )
            await pump(stream, ws, dropped=(OperationError,))
        except ConnectionError as exc:
            log.info("the viewer of VM %s's console went away: %s", vm_uuid, exc)
        finally:
            await stream.close()
            if not ws.closed:
                await ws.close(code=kvm.CONSOLE_CLOSE_NORMAL)
