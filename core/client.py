"""How ``zcli`` and ``ztui`` reach a management node.

One node owns a data dir at a time (a lock).  :func:`connect` becomes that
node when the data dir is free (running it in this process and serving its
socket, so other clients can reach it) and otherwise attaches to the node that
runs there through its Unix socket.  Both kinds of client answer the same
calls, so callers never care which one they got.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any, Protocol

from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.http import JsonHttpClient
from core.kernel.local_api import SOCKET_NAME, describe_api
from core.kernel.node import ManagementNode, NodeAlreadyRunning
from core.kernel.properties import Properties


class NodeClient(Protocol):
    in_process: bool

    async def call(self, api: str, params: Mapping[str, Any]) -> ApiReply: ...

    async def apis(self) -> list[dict[str, Any]]: ...

    async def close(self) -> None: ...


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

    async def close(self) -> None:
        await self.node.stop()


class SocketClient:
    """Another process is the node; talk to it over its socket."""

    in_process = False

    def __init__(self, socket_path: str) -> None:
        self._http = JsonHttpClient("http://node", unix_socket=socket_path)

    async def call(self, api: str, params: Mapping[str, Any]) -> ApiReply:
        return ApiReply.from_dict(await self._http.post(f"/v1/api/{api}", dict(params)))

    async def apis(self) -> list[dict[str, Any]]:
        return await self._http.get("/v1/apis")

    async def close(self) -> None:
        await self._http.close()


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
