"""The agent's HTTP server: authentication, the JSON envelope, sync and async commands.

Every request needs ``Authorization: Bearer <token>`` (401 otherwise), names a
registered path (404) and carries a JSON object (400).  A command's answer is
``{"success": true, "error": "", ...fields}``; a command that raises is answered
``{"success": false, "error": "<message>"}`` with HTTP 200, as kvmagent does.

An ASYNC command called with the ``taskuuid`` and ``callbackurl`` headers is
answered ``{"success": true}`` at once; it runs as a background task whose
answer is then POSTed to the callback URL (see agentkit.callback).  A task uuid
already running is not started twice.  Without those headers it runs
synchronously.  ``TASK_CANCEL`` (built in) cancels a running one.

A stream route (``streams``, e.g. the VM console's websocket) is a ``GET`` handed the
request itself once the token was checked; it answers what it likes (a websocket).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from agentkit.auth import bearer_matches
from agentkit.bounded_json import BadJsonBody, read_object
from agentkit.errors import AgentError, ArgumentError
from agentkit.fault import Fault
from contracts.base import Reply
from contracts.envelope import TASK_CANCEL, TASK_STATUS, CancelTaskRsp, TaskStatusRsp

log = logging.getLogger(__name__)
CANCEL_WAIT = 5.0
"""Seconds TASK_CANCEL waits for the cancelled command to end (and clean up)."""


@dataclass(frozen=True)
class CommandContext:
    task_uuid: str = ""
    """The ``taskuuid`` header of an asynchronous call ("" for a synchronous one)."""


Handler = Callable[[dict[str, Any], CommandContext], Awaitable[Reply | dict[str, Any]]]
"""A command: its JSON body -> its reply (a contract's model, or the fields as a dict)."""
SendCallback = Callable[[str, str, dict[str, Any]], Awaitable[bool]]
"""``(callback url, task uuid, answer)``: deliver an async command's answer."""
StreamHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Command:
    handler: Handler
    is_async: bool = False


class CommandRegistry:
    """Path -> handler, and whether the command may run asynchronously."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(self, path: str, handler: Handler, *, is_async: bool = False) -> None:
        if path in self._commands:
            raise ValueError(f"{path} is registered twice")
        self._commands[path] = Command(handler, is_async)

    def get(self, path: str) -> Command | None:
        return self._commands.get(path.rstrip("/") or "/")

    def paths(self) -> list[str]:
        return sorted(self._commands)


def _reply(status: int, error: str, **fields: Any) -> web.Response:
    return web.json_response({"success": status < 300, "error": error, **fields}, status=status)


class AgentServer:
    def __init__(
        self,
        registry: CommandRegistry,
        token: str,
        send_callback: SendCallback,
        streams: Mapping[str, StreamHandler] | None = None,
    ) -> None:
        self.registry = registry
        self.token = token
        self.send_callback = send_callback
        self.streams = dict(streams or {})
        for path in self.streams:
            if registry.get(path) is not None:
                raise ValueError(f"{path} is both a command and a stream")
        self.app = web.Application(client_max_size=16 * 1024 * 1024)
        self.app.router.add_route("*", "/{path:.*}", self._handle)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._builtin = {
            TASK_STATUS: Command(self._task_status),
            TASK_CANCEL: Command(self._cancel_task),
        }
        """Commands every agent serves, about its own async commands."""
        self.fault = Fault.from_env()
        """The test-only fault hook (agentkit.fault): None unless ZSL_AGENT_FAULT is set."""
        self._runner: web.AppRunner | None = None
        self._unix_socket: tuple[str, int, int] | None = None
        self.port = 0

    def on_shutdown(self, callback: Callable[[], Awaitable[None]]) -> None:
        """Call ``callback`` when the server stops, before it waits for its handlers (a
        websocket handler would keep it waiting)."""

        async def call(_app: web.Application) -> None:
            await callback()

        self.app.on_shutdown.append(call)

    # -- lifecycle -------------------------------------------------------------
    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (port 0: any free port); the port bound."""
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        log.info("agent listening on %s:%d", host, self.port)
        return self.port

    async def start_unix(self, path: str) -> None:
        """Listen on the Unix socket ``path``, mode 0600.  A socket file already there (left
        by an earlier run) is removed first; any other kind of file is an error."""
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise FileExistsError(f"{path} exists and is not a socket")
            os.unlink(path)
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.UnixSite(self._runner, path)
        await site.start()
        os.chmod(path, 0o600)
        made = os.lstat(path)
        self._unix_socket = (path, made.st_dev, made.st_ino)
        log.info("agent listening on %s", path)

    async def stop(self) -> None:
        """Cancel running async commands, then close the server."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        self._remove_unix_socket()

    def _remove_unix_socket(self) -> None:
        """The socket file this server made (aiohttp leaves it), unless another server has
        put its own at the path since."""
        made, self._unix_socket = self._unix_socket, None
        if made is None:
            return
        path, dev, ino = made
        with contextlib.suppress(FileNotFoundError):
            now = os.lstat(path)
            if (now.st_dev, now.st_ino) == (dev, ino):
                os.unlink(path)

    @property
    def running_tasks(self) -> list[str]:
        return list(self._tasks)

    # -- requests --------------------------------------------------------------
    async def _task_status(self, body: dict[str, Any], _ctx: CommandContext) -> TaskStatusRsp:
        """TASK_STATUS: whether an async command still runs here."""
        task_uuid = _task_uuid(body)
        return TaskStatusRsp(task_uuid=task_uuid, running=task_uuid in self._tasks)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if not bearer_matches(request.headers.get("Authorization", ""), self.token):
            return _reply(401, "missing or wrong bearer token")
        path = request.path
        stream = self.streams.get(path)
        if stream is not None:
            if request.method != "GET":
                return _reply(405, f"{path} takes GET, not {request.method}")
            return await stream(request)
        command = self._builtin.get(path) or self.registry.get(path)
        if command is None:
            return _reply(404, f"no command at {path}")
        if request.method != "POST":
            return _reply(405, f"{path} takes POST, not {request.method}")
        try:
            body = await read_object(request)
        except BadJsonBody as exc:
            return _reply(400, str(exc))

        task_uuid = request.headers.get("taskuuid", "")
        callback_url = request.headers.get("callbackurl", "")
        if not task_uuid and not callback_url:
            return web.json_response(await self._execute(path, command, body, CommandContext()))
        if not command.is_async:
            return _reply(400, f"{path} is synchronous: call it without taskuuid/callbackurl")
        if not (task_uuid and callback_url):
            return _reply(400, "an async call needs both the taskuuid and callbackurl headers")
        if task_uuid in self._tasks:
            log.info("task %s (%s) is already running; ignoring the repeat", task_uuid, path)
        else:
            task = asyncio.create_task(
                self._run_async(path, command, body, task_uuid, callback_url),
                name=f"{path} {task_uuid}",
            )
            self._tasks[task_uuid] = task
            task.add_done_callback(lambda _t: self._tasks.pop(task_uuid, None))
        return _reply(200, "")

    async def _cancel_task(self, body: dict[str, Any], _ctx: CommandContext) -> CancelTaskRsp:
        """TASK_CANCEL: cancel a running async command and wait for it to end."""
        task_uuid = _task_uuid(body)
        task = self._tasks.get(task_uuid)
        if task is None:
            return CancelTaskRsp(task_uuid=task_uuid, cancelled=False)
        log.info("task %s: cancelled by the caller", task_uuid)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=CANCEL_WAIT)
        if not done:
            log.warning("task %s: still ending %gs after it was cancelled", task_uuid, CANCEL_WAIT)
        return CancelTaskRsp(task_uuid=task_uuid, cancelled=True)

    async def _run_async(
        self, path: str, command: Command, body: dict[str, Any], task_uuid: str, callback_url: str
    ) -> None:
        answer = await self._execute(path, command, body, CommandContext(task_uuid))
        await self.send_callback(callback_url, task_uuid, answer)

    async def _execute(
        self, path: str, command: Command, body: dict[str, Any], ctx: CommandContext
    ) -> dict[str, Any]:
        if self.fault is not None:
            self.fault.hit(path, "before")
        answer = await self._run_handler(path, command, body, ctx)
        if self.fault is not None:
            self.fault.hit(path, "after")
        return answer

    async def _run_handler(
        self, path: str, command: Command, body: dict[str, Any], ctx: CommandContext
    ) -> dict[str, Any]:
        started = time.monotonic()
        try:
            fields = await command.handler(body, ctx)
        except AgentError as exc:
            log.warning("%s failed: %s", path, exc)
            return {"success": False, "error": str(exc) or type(exc).__name__}
        except Exception as exc:
            log.exception("%s failed unexpectedly", path)
            return {"success": False, "error": f"{path} failed: {type(exc).__name__}: {exc}"}
        log.info("%s done in %.2fs", path, time.monotonic() - started)
        if isinstance(fields, Reply):
            fields = fields.to_json()
        return {"success": True, "error": "", **fields}


def _task_uuid(body: dict[str, Any]) -> str:
    task_uuid = body.get("taskUuid")
    if not isinstance(task_uuid, str) or not task_uuid:
        raise ArgumentError("field 'taskUuid' must be a non-empty string")
    return task_uuid
