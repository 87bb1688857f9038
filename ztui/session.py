"""The app's link to the management node service: connect, call, reconnect, close.

ztui is a client only: it attaches to the node that owns the data dir, starting
the service first when none runs (and says so once); quitting leaves the node,
its VMs, routers and periodic jobs running.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.client import NodeClient, connect
from core.daemon.control import ControlError
from core.kernel.api import ApiReply
from core.kernel.data_dir import NodeError
from core.kernel.errors import ErrorCode, OperationError, SysErrors
from core.kernel.extensions import PluginError
from core.kernel.properties import Properties

if TYPE_CHECKING:
    from core.client import EventStream
    from core.vm.console import VmConsoleStream

Connector = Callable[[Properties], Awaitable[NodeClient]]
CONNECT_ERRORS = (ControlError, NodeError, PluginError, OperationError, OSError)
READ_ONLY_PREFIXES = ("Query", "Get")
RESUBSCRIBE_DELAY = 1.0
"""Seconds between attempts to follow the events of a node that cannot be reached."""


class NotConnected(RuntimeError):
    """The session is closed: nothing may connect any more."""


def is_read_only(api: str) -> bool:
    """Whether calling ``api`` twice is harmless (queries and getters)."""
    return api.startswith(READ_ONLY_PREFIXES)


def is_unknown_api(reply: ApiReply, api: str) -> bool:
    """Whether ``reply`` says the node has no API ``api`` (a plugin that brings it is not
    installed or not enabled).  The bus answers that with an invalid-argument error that
    only its words tell from others: ``no API named <api>``."""
    error = reply.error
    return (
        not reply.success
        and error is not None
        and error.code == SysErrors.INVALID_ARGUMENT
        and error.description == f"no API named {api}"
    )


class NodeSession:
    """Owns the :class:`NodeClient` of the app, from :meth:`open` to :meth:`close`.

    :meth:`call` never raises for an API failure: an error reaching the node
    comes back as a failed :class:`ApiReply`, so the UI has one kind of error
    to show.  When the node has gone away (it was stopped or killed), a
    read-only call connects again, starting the service, and is repeated once.
    """

    def __init__(self, props: Properties, connector: Connector | None = None) -> None:
        """``connector`` replaces attaching to the service (tests host a node in-process)."""
        self.props = props
        self._connector = connector or self._connect_service
        self.announcements: list[str] = []
        """What connecting did that the user should know once (it started the service)."""
        self._client: NodeClient | None = None
        self._closed = False
        self._reconnecting = asyncio.Lock()

    @property
    def data_dir(self) -> Path:
        return self.props.data_dir

    @property
    def in_process(self) -> bool | None:
        """True: this process hosts the node (tests); False: attached to the service;
        None: no node."""
        return None if self._client is None else self._client.in_process

    async def open(self) -> None:
        """Attach to the data dir's node (starting it); raises what ``connect`` raises."""
        if self._closed:
            raise NotConnected("the session is closed")
        if self._client is None:
            await self._reconnect(None)

    async def call(self, api: str, params: Mapping[str, Any] | None = None) -> ApiReply:
        """Call an API; an error reaching the node becomes a failed reply."""
        args = dict(params or {})
        client = self._client
        failure: ErrorCode | None = None
        if client is not None:
            try:
                return await client.call(api, args)
            except OperationError as exc:
                if client.in_process or not is_read_only(api):
                    return ApiReply.failure(exc.error)
                failure = exc.error
        try:
            client = await self._reconnect(client)
        except CONNECT_ERRORS as exc:
            return ApiReply.failure(_connect_error(failure, exc))
        except NotConnected as exc:
            return ApiReply.failure(ErrorCode(SysErrors.OPERATION_ERROR, str(exc)))
        try:
            return await client.call(api, args)
        except OperationError as exc:
            return ApiReply.failure(exc.error)

    async def subscribe(self, patterns: Sequence[str]) -> EventStream | None:
        """Follow the node's canonical events; None once the session is closed.

        A stream ends when the node stops; subscribing again then connects again
        (starting the service).
        """
        while not self._closed:
            client = self._client
            try:
                if client is None:
                    client = await self._reconnect(None)
                return await client.subscribe(patterns)
            except NotConnected:
                return None
            except CONNECT_ERRORS:
                if self._closed:
                    return None
                with suppress(*CONNECT_ERRORS, NotConnected):
                    await self._reconnect(client)
                await asyncio.sleep(RESUBSCRIBE_DELAY)
        return None

    async def open_console(self, vm_uuid: str) -> VmConsoleStream:
        """A VM's serial console as a byte stream (the caller closes it), connecting
        first if there is no node yet.  Raises OperationError when it cannot be opened
        (the VM does not run, the node cannot be reached…), NotConnected once the
        session is closed."""
        client = self._client
        if client is None:
            try:
                client = await self._reconnect(None)
            except CONNECT_ERRORS as exc:
                raise OperationError(_connect_error(None, exc)) from None
        return await client.open_console(vm_uuid)

    async def close(self) -> None:
        """Drop the link to the node, which goes on running (idempotent); a node hosted
        in this process (tests) is stopped."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    async def _connect_service(self, props: Properties) -> NodeClient:
        return await connect(props, announce=self.announcements.append)

    async def _reconnect(self, failed: NodeClient | None) -> NodeClient:
        """Replace ``failed`` (or no client) with a new one, once for all calls that saw it."""
        async with self._reconnecting:
            if self._closed:
                raise NotConnected("the session is closed")
            if self._client is failed:
                self._client = None
                if failed is not None:
                    await failed.close()
                client = await self._connector(self.props)
                if self._closed:  # closed while connecting: do not keep a node running
                    await client.close()
                    raise NotConnected("the session is closed")
                self._client = client
            assert self._client is not None
            return self._client


def _connect_error(first: ErrorCode | None, exc: Exception) -> ErrorCode:
    """Why connecting failed, as the cause of the error that made us reconnect."""
    error = (
        exc.error
        if isinstance(exc, OperationError)
        else ErrorCode(SysErrors.OPERATION_ERROR, f"cannot connect to the management node: {exc}")
    )
    if first is None:
        return error
    return ErrorCode(first.code, first.description, first.details, error)
