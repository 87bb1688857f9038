"""How ``ztui`` reaches the management node, a service of its own.

:func:`connect` attaches to the node that owns the data dir through its Unix
socket, starting that node (detached, see :mod:`core.daemon.control`) when
none runs; a client never becomes the node.  :class:`InProcessClient` answers
the same calls for code that hosts a node in its own process (tests,
benchmarks), so callers never care which one they got.

Both also stream the node's canonical events (:meth:`NodeClient.subscribe`) with
the same JSON-able data: :mod:`core.kernel.event_json` converts them once, for
either way.  A stream ends when the node stops (or, over the socket, when the
node goes away); a reader that falls too far behind gets ``/client/overflow``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, Self

from core.daemon.control import ControlError, ensure_running, socket_of
from core.daemon.node_socket import NodeSocket
from core.kernel.api import ApiReply
from core.kernel.event_json import OVERFLOW_PATH, NodeEvent
from core.kernel.http import JsonHttpClient, JsonLineStream
from core.kernel.local_api import describe_bus
from core.kernel.properties import Properties
from core.vm.console import VmConsoleStream, open_console_over_socket, open_vm_console

if TYPE_CHECKING:
    from core.kernel.node import ManagementNode

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
    """This process hosts the node (tests, benchmarks); closing the client stops it."""

    in_process = True

    def __init__(self, node: ManagementNode) -> None:
        self.node = node

    async def call(self, api: str, params: Mapping[str, Any]) -> ApiReply:
        return await self.node.call(api, params)

    async def apis(self) -> list[dict[str, Any]]:
        assert self.node.bus is not None
        return describe_bus(self.node.bus)

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


async def connect(
    props: Properties, *, start: bool = True, announce: Callable[[str], None] | None = None
) -> NodeClient:
    """Attach to the data dir's node, starting it first (detached) when none runs and
    ``start`` is true; ``announce`` is told once if this call started it.  Raises
    ControlError when there is no node to attach to (its message says why)."""
    if start:
        await asyncio.to_thread(ensure_running, props, announce)
    elif not await asyncio.to_thread(NodeSocket(socket_of(props), timeout=5).answers):
        raise ControlError(f"no management node runs on {props.data_dir}")
    return SocketClient(str(socket_of(props)))
