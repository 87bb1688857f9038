"""How ``zcli`` and ``ztui`` reach a management node.

One node owns a data dir at a time (a lock).  :func:`connect` becomes that
node when the data dir is free (running it in this process and serving its
socket, so other clients can reach it) and otherwise attaches to the node that
runs there through its Unix socket.  Both kinds of client answer the same
calls, so callers never care which one they got.

Both also stream the node's canonical events (:meth:`NodeClient.subscribe`) with
the same JSON-able data: :mod:`core.kernel.event_json` converts them once, for
either way.  A stream ends when the node stops (or, over the socket, when the
node goes away); a reader that falls too far behind gets ``/client/overflow``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self

from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.event_json import OVERFLOW_PATH, NodeEvent
from core.kernel.http import JsonHttpClient, JsonLineStream
from core.kernel.local_api import SOCKET_NAME, describe_api
from core.kernel.node import ManagementNode, NodeAlreadyRunning
from core.kernel.properties import Properties
from core.vm.console import VmConsoleStream, open_console_over_socket, open_vm_console

__all__ = [
    "OVERFLOW_PATH",
    "EventStream",
    "InProcessClient",
    "NodeClient",
    "NodeEvent",
    "SocketClient",
    "connect",
]


class EventStream(Protocol):
    """The events of one subscription, as they come: ``async for event in stream``."""

    def __aiter__(self) -> Self: ...

    async def __anext__(self) -> NodeEvent: ...

    async def close(self) -> None: ...


class NodeClient(Protocol):
    in_process: bool

    async def call(self, api: str, params: Mapping[str, Any]) -> ApiReply: ...

    async def apis(self) -> list[dict[str, Any]]: ...

    async def subscribe(self, patterns: Sequence[str]) -> EventStream:
        """Events on any of these path patterns (``{token}`` matches one segment), from now
        on; an invalid pattern raises an argument OperationError."""
        ...

    async def close(self) -> None: ...

    async def open_console(self, vm_uuid: str) -> VmConsoleStream:
        """A VM's serial console as a byte stream (the caller closes it)."""
        ...


class InProcessClient:
    """This process is the node."""

    in_process = True

    def __init__(self, node: ManagementNode) -> None:
        self.node = node

    async def call(self, api: str, params: Mapping[str, Any]) -> ApiReply:
        return await self.node.call(api, params)

    async def apis(self) -> list[dict[str, Any]]:
        assert self.node.bus is not None
        return [describe_api(m) for m in self.node.bus.messages().values()]

    async def subscribe(self, patterns: Sequence[str]) -> EventStream:
        return self.node.event_queue(patterns)

    async def close(self) -> None:
        await self.node.stop()

    async def open_console(self, vm_uuid: str) -> VmConsoleStream:
        return await open_vm_console(self.node, vm_uuid)


class SocketClient:
    """Another process is the node; talk to it over its socket."""

    in_process = False

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._http = JsonHttpClient("http://node", unix_socket=socket_path)

    async def call(self, api: str, params: Mapping[str, Any]) -> ApiReply:
        return ApiReply.from_dict(await self._http.post(f"/v1/api/{api}", dict(params)))

    async def apis(self) -> list[dict[str, Any]]:
        return await self._http.get("/v1/apis")

    async def subscribe(self, patterns: Sequence[str]) -> EventStream:
        if isinstance(patterns, str):
            patterns = [patterns]
        lines = await self._http.stream(
            "GET", "/v1/events", params=[("path", pattern) for pattern in patterns]
        )
        return _SocketEventStream(lines)

    async def close(self) -> None:
        await self._http.close()

    async def open_console(self, vm_uuid: str) -> VmConsoleStream:
        return await open_console_over_socket(self.socket_path, vm_uuid)


class _SocketEventStream:
    """The node's event stream (newline-delimited JSON) read from its socket."""

    def __init__(self, lines: JsonLineStream) -> None:
        self._lines = lines

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> NodeEvent:
        try:
            line = await self._lines.next()
        except EOFError:
            raise StopAsyncIteration from None
        return NodeEvent(str(line["path"]), line.get("data"))

    async def close(self) -> None:
        await self._lines.close()


async def connect(props: Properties, *, wait: float = 30.0) -> NodeClient:
    """Become the data dir's node, or attach to the one running there.

    A node that is starting holds the lock before its socket is up, so this
    retries until ``wait`` seconds have passed.
    """
    deadline = time.monotonic() + wait
    socket_path = str(props.data_dir / SOCKET_NAME)
    last_error: Exception | None = None
    while True:
        node = ManagementNode(props)
        try:
            await node.start()
            return InProcessClient(node)
        except NodeAlreadyRunning as exc:
            last_error = exc
        client = SocketClient(socket_path)
        try:
            await client.apis()
            return client
        except OperationError as exc:
            last_error = exc
            await client.close()
        if time.monotonic() > deadline:
            raise OperationError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"cannot reach the management node on {props.data_dir}",
                    str(last_error),
                )
            )
        await asyncio.sleep(0.05)
