"""The running node's local API: the bus served on ``<data_dir>/node.sock``.

``zcli`` (and a second ``ztui``) reach a node that already runs on the data
dir through this socket instead of opening the database themselves.  The
socket is mode 0600: only the owner of the data dir may drive the node.

Routes: ``GET /v1/ping`` answers ``{"pid": ...}`` (the node is ready);
``GET /v1/apis`` lists every API with its parameters, ``GET /v1/apis/<ApiName>`` one;
``POST /v1/api/<ApiName>`` with a JSON object of parameters answers an ApiReply
(``?indent=2``: indented, with an ``X-Zstack-Lite-Success`` header, so that ``zcli``
prints it as it comes);
``GET /v1/events?path=<pattern>&path=...`` streams the node's canonical events
matching any pattern (``{token}`` segments allowed) as newline-delimited JSON,
one ``{"path": ..., "data": ...}`` per line, until the client goes or the node
stops (see :mod:`core.kernel.event_json` for the data and the overflow event).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from agentkit.bounded_json import BadJsonBody, read_object
from core.daemon.node_socket import SUCCESS_HEADER
from core.kernel.api import ApiMessage
from core.kernel.api_params import ApiParameterExtensionPoint
from core.kernel.errors import OperationError, argerr
from core.kernel.event_json import EventQueue, NodeEvent
from core.kernel.events import EventBus
from core.kernel.names import describe_alias

if TYPE_CHECKING:
    from core.kernel.bus import ApiBus

STOP_GRACE = 5.0
"""Seconds a stopping node keeps serving the connections it already has (bounded, as the
data dir stays locked meanwhile)."""
STREAM_POLL = 0.5
"""Seconds between two checks, on an idle event stream, that its client is still there."""
STREAM_BATCH = 256
"""Events written to a stream at once, at most (one write for all that are queued)."""


def describe_api(
    msg_type: type[ApiMessage], contributions: Sequence[type[ApiParameterExtensionPoint]] = ()
) -> dict[str, Any]:
    """``msg_type`` as ``GET /v1/apis`` lists it, with the parameters ``contributions``
    (plugins' :class:`ApiParameterExtensionPoint` classes or instances) add to it."""
    params = {name: spec.describe() for name, spec in msg_type.params.items()}
    for ext in contributions:
        params |= {name: spec.describe() for name, spec in ext.api_params.items()}
    return {
        "name": msg_type.api_name,
        "description": (msg_type.__doc__ or "").strip().splitlines()[0] if msg_type.__doc__ else "",
        "readOnly": msg_type.read_only,
        "params": params | describe_alias(msg_type),
    }


def describe_bus(bus: ApiBus) -> list[dict[str, Any]]:
    """Every API ``bus`` answers, described, with what plugins add."""
    return [
        describe_api(m, [type(e) for e in bus.contributions(name)])
        for name, m in bus.messages().items()
    ]


def describe_installed_apis(
    enabled: Sequence[str], disabled: Sequence[str]
) -> list[dict[str, Any]]:
    """Every API the enabled plugins answer, described as ``GET /v1/apis`` would, found
    without starting a node (for ``zcli help`` when none runs)."""
    from core.kernel.extensions import ExtensionRegistry
    from core.kernel.service import Service

    found: dict[str, type[ApiMessage]] = {}
    added: dict[str, list[type[ApiParameterExtensionPoint]]] = {}
    for cls in ExtensionRegistry().discover(enabled, disabled).values():
        if isinstance(cls, type) and issubclass(cls, Service):
            for msg_type in cls.declared_messages():
                found[msg_type.api_name] = msg_type
        if isinstance(cls, type) and issubclass(cls, ApiParameterExtensionPoint):
            added.setdefault(cls.api_name, []).append(cls)
    return [describe_api(found[name], added.get(name, [])) for name in sorted(found)]


class LocalApiRouteProvider(ABC):
    """Extension point: a plugin that serves more than API calls on the node's socket
    (a VM's serial console is a websocket).  Routes go under ``/v1/``; anything they keep
    open must close on the app's ``on_shutdown`` signal, which the node sends at stop."""

    @abstractmethod
    def add_local_api_routes(self, app: web.Application) -> None: ...


class LocalApiServer:
    def __init__(
        self,
        bus: ApiBus,
        path: Path,
        events: EventBus | None = None,
        route_providers: Sequence[LocalApiRouteProvider] = (),
    ) -> None:
        """``events``: the bus ``/v1/events`` streams (none: the route answers 404)."""
        self.bus = bus
        self.path = path
        self.events = events
        self.route_providers = list(route_providers)
        self._app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._streams: set[EventQueue] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/ping", self._ping)
        app.router.add_get("/v1/apis", self._apis)
        app.router.add_get("/v1/apis/{name}", self._api)
        app.router.add_post("/v1/api/{name}", self._call)
        app.router.add_get("/v1/events", self._events)
        for provider in self.route_providers:
            provider.add_local_api_routes(app)
        self._app = app
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
        # Event streams never end by themselves: wait for the calls under way (whose
        # events the streams still carry), then end the streams and let them flush.
        while (server := self._runner.server) is not None and len(server.connections) > len(
            self._streams
        ):
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        for stream in list(self._streams):
            stream.end()
        if self._app is not None:
            await self._app.shutdown()  # long-lived routes (consoles) close now, not at cleanup
        while (server := self._runner.server) is not None and server.connections:
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        await self._runner.cleanup()
        self._runner = None

    async def _ping(self, _request: web.Request) -> web.Response:
        return web.json_response({"pid": os.getpid()})

    async def _api(self, request: web.Request) -> web.Response:
        msg_type = self.bus.messages().get(request.match_info["name"])
        if msg_type is None:
            return web.json_response(
                {"error": f"no API named {request.match_info['name']}"}, status=404
            )
        contributions = [type(e) for e in self.bus.contributions(msg_type.api_name)]
        return web.json_response(describe_api(msg_type, contributions))

    async def _apis(self, _request: web.Request) -> web.Response:
        return web.json_response(describe_bus(self.bus))

    async def _call(self, request: web.Request) -> web.Response:
        try:
            params = await read_object(request)
        except BadJsonBody as exc:
            return web.json_response(
                {"success": False, "error": argerr(str(exc)).error.to_dict()}, status=400
            )
        reply = await self.bus.call_by_name(request.match_info["name"], params)
        if request.query.get("indent") == "2":  # for a client that prints it as it is
            return web.Response(
                text=json.dumps(reply.to_dict(), indent=2, default=str) + "\n",
                content_type="application/json",
                headers={SUCCESS_HEADER: "true" if reply.success else "false"},
            )
        return web.json_response(reply.to_dict())

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if self.events is None:
            raise web.HTTPNotFound()
        try:
            queue = EventQueue(
                self.events, request.query.getall("path", []), on_end=self._streams.discard
            )
        except OperationError as exc:
            return web.json_response(
                {"success": False, "error": exc.error.to_dict()},
                status=400,
            )
        self._streams.add(queue)
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        response.enable_chunked_encoding()
        response.force_close()  # one stream per connection, closed when the stream ends
        try:
            await response.prepare(request)
            while (batch := await _next_batch(queue, request)) is not None:
                await response.write(b"".join(_line(event) for event in batch))
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
        except ConnectionError:
            pass  # the client went away
        finally:
            await queue.close()
        return response


async def _next_batch(queue: EventQueue, request: web.Request) -> list[NodeEvent] | None:
    """The events queued now (waiting for one); None when the queue ended or the client
    went away."""
    while True:
        try:
            first = await asyncio.wait_for(queue.get(), STREAM_POLL)
        except TimeoutError:
            transport = request.transport
            if transport is None or transport.is_closing():
                return None
            continue
        if first is None:
            return None
        batch = [first]
        while len(batch) < STREAM_BATCH and (event := queue.get_nowait()) is not None:
            batch.append(event)
        return batch


def _line(event: NodeEvent) -> bytes:
    return json.dumps({"path": event.path, "data": event.data}).encode() + b"\n"
