"""The node's HTTP endpoint for agents (ZStack's RESTFacade), and agent calls.

Agents answer long commands later, by POSTing to a callback URL, and push
reports (a VM's state changed, download progress).  This endpoint receives
both, on ``rest.host``:``rest.port`` (an ephemeral port by default: the URL is
given to each agent when it connects).  Every request must carry the bearer
token of an agent the node knows.

:class:`AgentClient` is the one way the core calls an agent: ``call`` for a
synchronous command, ``call_async`` for ZStack's async envelope (task uuid and
callback URL headers, 200 at once, the answer later).  An answer with
``success: false`` becomes an OperationError carrying the agent's message.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from agentkit.bounded_json import BadJsonBody, read_object
from contracts.base import R, Request
from contracts.envelope import TASK_CANCEL, TASK_STATUS
from core.kernel.db import new_uuid
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.http import JsonHttpClient, UnreachableError

log = logging.getLogger(__name__)
CALLBACK_PATH = "/agent/callback"
WATCH_INTERVAL = 2.0
"""Seconds between two questions to an agent about an async call it should answer."""
WATCH_MISSES = 2
"""Refused connections in a row after which an agent counts as gone (not one: a remote
agent's network may blink)."""
ReportHandler = Callable[[dict[str, Any]], Awaitable[None]]
CANCEL_TIMEOUT = 10.0
"""Seconds a cancelled ``call_async`` waits for the agent to cancel its command."""


class RestFacade:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._tokens: set[str] = set()
        self._pending: dict[str, tuple[asyncio.Future[dict[str, Any]], str]] = {}
        self._reports: dict[str, ReportHandler] = {}
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def callback_url(self) -> str:
        return self.base_url + CALLBACK_PATH

    def allow_token(self, token: str) -> None:
        """Accept requests from the agent holding ``token``."""
        if token:
            self._tokens.add(token)

    def on_report(self, path: str, handler: ReportHandler) -> None:
        if path in self._reports:
            raise ValueError(f"report path {path} has a handler already")
        self._reports[path] = handler

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post(CALLBACK_PATH, self._callback)
        app.router.add_post("/{path:.*}", self._report)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        for future, _ in self._pending.values():
            if not future.done():
                future.set_exception(
                    OperationError(
                        ErrorCode(SysErrors.OPERATION_ERROR, "the management node is stopping")
                    )
                )
        self._pending.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def expect(self, token: str) -> tuple[str, asyncio.Future[dict[str, Any]]]:
        """Register an async call: its task uuid and the future its callback resolves."""
        task_uuid = new_uuid()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[task_uuid] = (future, token)
        return task_uuid, future

    def forget(self, task_uuid: str) -> None:
        self._pending.pop(task_uuid, None)

    def _token_of(self, request: web.Request) -> str:
        auth = request.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else ""

    def _known(self, token: str) -> bool:
        return any(hmac.compare_digest(token, known) for known in self._tokens)

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The body, or the 400 answer saying why it is refused."""
        try:
            return await read_object(request)
        except BadJsonBody as exc:
            return web.json_response({"success": False, "error": str(exc)}, status=400)

    async def _callback(self, request: web.Request) -> web.Response:
        token = self._token_of(request)
        entry = self._pending.get(request.headers.get("taskuuid", ""))
        if entry is None:
            # Unknown or already answered (e.g. the caller timed out): tell the agent to stop.
            return web.json_response({"success": False, "error": "no such task"}, status=404)
        future, expected = entry
        if not hmac.compare_digest(token, expected):
            return web.json_response({"success": False, "error": "bad token"}, status=401)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        self._pending.pop(request.headers["taskuuid"], None)
        if not future.done():
            future.set_result(body)
        return web.json_response({"success": True})

    async def _report(self, request: web.Request) -> web.Response:
        if not self._known(self._token_of(request)):
            return web.json_response({"success": False, "error": "bad token"}, status=401)
        handler = self._reports.get("/" + request.match_info["path"])
        if handler is None:
            return web.json_response({"success": False, "error": "no such report"}, status=404)
        body = await self._body(request)
        if isinstance(body, web.Response):
            return body
        try:
            await handler(body)
        except Exception as exc:
            log.exception("report %s failed", request.path)
            return web.json_response({"success": False, "error": str(exc)})
        return web.json_response({"success": True})


class AgentClient:
    """Calls one agent: a KVM host agent over TCP, or a virtual router's agent over the
    Unix socket its host agent made (``unix_socket``; ``url`` then only names it)."""

    def __init__(
        self, url: str, token: str, rest: RestFacade, what: str, unix_socket: str | None = None
    ) -> None:
        self.url = url
        self.token = token
        self.rest = rest
        self.what = what
        """How errors name the agent, e.g. ``host kvm-1 (127.0.0.1:7070)``."""
        self.watch_interval = WATCH_INTERVAL
        """Seconds between two questions to the agent while an async call waits."""
        self._http = JsonHttpClient(
            url, unix_socket=unix_socket, headers={"Authorization": f"Bearer {token}"}
        )
        rest.allow_token(token)

    async def send(
        self, cmd: Request[R], timeout: float | None = None, cancellable: bool = False
    ) -> R:
        """Send a typed command (contracts.kvm, contracts.virtual_router) and read its typed
        reply.  An ASYNC command waits for its callback (``timeout`` default 300 s, else
        30 s); ``cancellable`` as for :meth:`call_async`.  A reply that does not match the
        contract fails the call, naming the field."""
        body = cmd.to_json()
        if cmd.ASYNC:
            answer = await self.call_async(cmd.PATH, body, timeout or 300.0, cancellable)
        else:
            answer = await self.call(cmd.PATH, body, timeout or 30.0)
        try:
            return cmd.reply(answer)
        except ValidationError as exc:
            raise OperationError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"{self.what} answered {cmd.PATH} against its contract",
                    _validation_details(exc),
                )
            ) from None

    async def call(self, path: str, body: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """POST a command and read its answer; an agent that cannot be connected to raises
        :class:`UnreachableError` (the command was never sent)."""
        try:
            answer = await self._http.post(path, body, timeout)
        except UnreachableError as exc:
            raise UnreachableError(self._failed(path, exc.error).error) from None
        except OperationError as exc:
            raise self._failed(path, exc.error) from None
        return self._checked(path, answer)

    async def call_async(
        self, path: str, body: dict[str, Any], timeout: float = 300.0, cancellable: bool = False
    ) -> dict[str, Any]:
        """``cancellable``: if the caller is cancelled, the agent is told to cancel the
        command (TASK_CANCEL) and the cancellation waits (at most CANCEL_TIMEOUT) for it
        to end there, so that what the command leaves behind is settled."""
        task_uuid, future = self.rest.expect(self.token)
        headers = {"taskuuid": task_uuid, "callbackurl": self.rest.callback_url}
        try:
            try:
                accepted = await self._http.request("POST", path, body, 30.0, headers=headers)
            except OperationError as exc:
                raise self._failed(path, exc.error) from None
            self._checked(path, accepted)
            try:
                answer = await asyncio.wait_for(self._answer(path, task_uuid, future), timeout)
            except TimeoutError:
                raise OperationError(
                    ErrorCode(
                        SysErrors.TIMEOUT, f"{self.what} did not answer {path} within {timeout:g}s"
                    )
                ) from None
        except asyncio.CancelledError:
            if cancellable:
                await self._cancel(path, task_uuid)
            raise
        finally:
            self.rest.forget(task_uuid)
        return self._checked(path, answer)

    async def _answer(
        self, path: str, task_uuid: str, future: asyncio.Future[dict[str, Any]]
    ) -> dict[str, Any]:
        """The callback's answer; while it is awaited, every ``watch_interval`` seconds, ask
        the agent whether it still runs the task, and fail if it does not (it restarted) or
        twice in a row cannot be reached (it died): its answer would never come."""
        unreachable = 0
        while True:
            done, _ = await asyncio.wait({future}, timeout=self.watch_interval)
            if done:
                return future.result()
            try:
                status = await self._http.post(
                    TASK_STATUS, {"taskUuid": task_uuid}, self.watch_interval
                )
            except UnreachableError as exc:
                unreachable += 1
                if unreachable >= WATCH_MISSES and not future.done():
                    raise self._went_away(path, exc.error) from None
                continue
            except OperationError:
                continue  # busy or slow: the callback or the timeout decides
            unreachable = 0
            if isinstance(status, dict) and status.get("running") is False and not future.done():
                # The agent takes the answer off its list only once we have it, so a task
                # it no longer runs, still unanswered here, is lost.
                raise self._went_away(
                    path, ErrorCode(SysErrors.OPERATION_ERROR, "it no longer runs the task")
                )

    def _went_away(self, path: str, cause: ErrorCode) -> OperationError:
        return OperationError(
            ErrorCode(
                SysErrors.OPERATION_ERROR,
                f"the agent of {self.what} went away during {path}",
                cause=cause,
            )
        )

    async def _cancel(self, path: str, task_uuid: str) -> None:
        try:
            answer = await self._http.post(TASK_CANCEL, {"taskUuid": task_uuid}, CANCEL_TIMEOUT)
            self._checked(TASK_CANCEL, answer)
        except OperationError as exc:
            log.warning("cannot cancel %s (task %s) on %s: %s", path, task_uuid, self.what, exc)

    def _checked(self, path: str, answer: Any) -> dict[str, Any]:
        if not isinstance(answer, dict):
            raise OperationError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR, f"{self.what} answered {path} with no JSON object"
                )
            )
        if not answer.get("success", False):
            raise OperationError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"{self.what} failed {path}",
                    str(answer.get("error") or "no reason given"),
                )
            )
        return answer

    def _failed(self, path: str, cause: ErrorCode) -> OperationError:
        return OperationError(
            ErrorCode(SysErrors.OPERATION_ERROR, f"cannot call {path} on {self.what}", cause=cause)
        )

    async def close(self) -> None:
        await self._http.close()


def _validation_details(exc: ValidationError) -> str:
    """``field.path: what is wrong`` for each error, as one line."""
    return "; ".join(
        f"{'.'.join(str(part) for part in err['loc']) or 'the answer'}: {err['msg']}"
        for err in exc.errors()
    )
