"""A domain's serial console through libvirt's own console API.

Why ``virDomain.openConsole`` with a non-blocking ``virStream`` rather than opening the
pty ourselves: libvirt knows which pty belongs to the domain (it changes on every
start), it makes the console exclusive and ``VIR_DOMAIN_CONSOLE_FORCE`` takes it over
from any other holder (``virsh console`` included), so two readers never split the
output between them, which two opens of the same pty would do; and it works the same
whether libvirtd runs as root or not, on this host or over a remote URI.

Threads: the stream's event callback runs in libvirt's event thread (agent.
libvirt_backend runs the default event implementation there); it drains the stream
with non-blocking ``recv`` and hands each chunk to the asyncio loop with
``call_soon_threadsafe``.  Input is sent from the backend's thread pool.  The stream
answers EOF when the domain stops, and an I/O error when someone outside the agent
forces the console away.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

import libvirt

from agent.console import ConsoleStream
from agentkit.errors import AgentError
from contracts.kvm import CONSOLE_CLOSE_FAILED

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
SEND_TIMEOUT = 10.0
"""Seconds a write may wait for a full stream (a guest that stopped reading its serial)."""
_EVENTS = (
    libvirt.VIR_STREAM_EVENT_READABLE
    | libvirt.VIR_STREAM_EVENT_ERROR
    | libvirt.VIR_STREAM_EVENT_HANGUP
)


class LibvirtConsole(ConsoleStream):
    def __init__(
        self,
        vm_uuid: str,
        log_path: str,
        stream: libvirt.virStream,
        pool: Executor,
    ) -> None:
        super().__init__(vm_uuid, log_path)
        self._stream = stream
        self._pool = pool
        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()

    @classmethod
    async def open(
        cls, dom: libvirt.virDomain, vm_uuid: str, log_path: str, pool: Executor
    ) -> LibvirtConsole:
        """Open the domain's console (taking it from any other holder) and start reading."""
        loop = asyncio.get_running_loop()
        stream = await loop.run_in_executor(pool, _open_stream, dom, vm_uuid)
        console = cls(vm_uuid, log_path, stream, pool)
        try:
            await loop.run_in_executor(
                pool, stream.eventAddCallback, _EVENTS, console._on_event, None
            )
        except libvirt.libvirtError as exc:
            await loop.run_in_executor(pool, _abort, stream)
            raise AgentError(f"cannot watch the console of VM {vm_uuid}: {_message(exc)}") from None
        return console

    # -- libvirt's event thread ------------------------------------------------------
    def _on_event(self, stream: libvirt.virStream, _events: int, _opaque: Any) -> None:
        while True:
            try:
                data = stream.recv(READ_SIZE)
            except libvirt.libvirtError as exc:
                self._stop_watching(stream)
                self._to_loop(
                    self.end,
                    f"the console of VM {self.vm_uuid} was lost: {_message(exc)} (did another "
                    "viewer, such as virsh console --force, take it over?)",
                    CONSOLE_CLOSE_FAILED,
                )
                return
            if data == -2:  # drained: wait for the next event
                return
            if not data:
                self._stop_watching(stream)
                self._to_loop(self.end, f"the console of VM {self.vm_uuid} closed (VM stopped)")
                return
            self._to_loop(self.feed, data)

    def _stop_watching(self, stream: libvirt.virStream) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            stream.eventRemoveCallback()

    def _to_loop(self, fn: Callable[..., None], *args: Any) -> None:
        if not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed just now
                self._loop.call_soon_threadsafe(fn, *args)

    # -- the event loop --------------------------------------------------------------
    async def _send(self, data: bytes) -> None:
        async with self._send_lock:
            try:
                await self._loop.run_in_executor(
                    self._pool, functools.partial(_send_all, self._stream, data)
                )
            except libvirt.libvirtError as exc:
                reason = f"cannot type into the console of VM {self.vm_uuid}: {_message(exc)}"
                self.end(reason, CONSOLE_CLOSE_FAILED)
                raise AgentError(reason) from None

    async def _release(self) -> None:
        stream = self._stream
        await self._loop.run_in_executor(self._pool, _abort, stream)


# -- pool threads ---------------------------------------------------------------------
def _open_stream(dom: libvirt.virDomain, vm_uuid: str) -> libvirt.virStream:
    stream: libvirt.virStream | None = None
    try:
        stream = dom.connect().newStream(libvirt.VIR_STREAM_NONBLOCK)
        dom.openConsole(None, stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
    except libvirt.libvirtError as exc:
        if stream is not None:
            _abort(stream)
        raise AgentError(f"cannot open the console of VM {vm_uuid}: {_message(exc)}") from None
    return stream


def _send_all(stream: libvirt.virStream, data: bytes) -> None:
    deadline = time.monotonic() + SEND_TIMEOUT
    while data:
        sent = stream.send(data)
        if sent == -2:  # the stream is full: the guest is not reading
            if time.monotonic() > deadline:
                raise AgentError(f"the console took no input for {SEND_TIMEOUT:g}s")
            time.sleep(0.02)
            continue
        data = data[sent:]


def _abort(stream: libvirt.virStream) -> None:
    with contextlib.suppress(libvirt.libvirtError):
        stream.eventRemoveCallback()
    with contextlib.suppress(libvirt.libvirtError):
        stream.abort()


def _message(exc: libvirt.libvirtError) -> str:
    return exc.get_error_message() or str(exc)
