"""A VM's serial console as one viewer's byte stream, whatever the backend.

A backend's console produces output with :meth:`ConsoleStream.feed` and says why it
ended with :meth:`ConsoleStream.end` (a websocket close code of contracts.kvm and a
message); the viewer's side reads, writes and closes.  :class:`OpenConsoles` keeps one
console per VM, as libvirt does: opening it again takes it over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable

from agentkit.errors import AgentError
from contracts.kvm import CONSOLE_CLOSE_GOING_AWAY, CONSOLE_CLOSE_NORMAL, CONSOLE_CLOSE_TAKEN_OVER

log = logging.getLogger(__name__)

TAKEN_OVER = "another viewer opened the console of VM {vm_uuid}"


class ConsoleStream(ABC):
    """One viewer's bytes to and from a VM's serial console.

    Output is queued without bound: a serial line is slow (115200 baud is ~11 KiB/s), so
    a viewer that reads late costs little memory.  The first :meth:`end` wins.
    """

    def __init__(self, vm_uuid: str, log_path: str) -> None:
        self.vm_uuid = vm_uuid
        self.log_path = log_path
        self.close_code: int | None = None
        self.close_reason = ""
        self._chunks: asyncio.Queue[bytes] = asyncio.Queue()
        self._released = False
        self._on_close: list[Callable[[], None]] = []

    @property
    def ended(self) -> bool:
        return self.close_code is not None

    def feed(self, data: bytes) -> None:
        """Output of the console, for :meth:`read` (dropped once the console ended)."""
        if data and not self.ended:
            self._chunks.put_nowait(data)

    def end(self, reason: str, code: int = CONSOLE_CLOSE_NORMAL) -> None:
        """No more output: :meth:`read` answers b"" once what was fed is read."""
        if self.ended:
            return
        self.close_code, self.close_reason = code, reason
        self._chunks.put_nowait(b"")

    def on_close(self, callback: Callable[[], None]) -> None:
        self._on_close.append(callback)

    async def read(self) -> bytes:
        """The next output; b"" once the console ended (see close_code, close_reason)."""
        data = await self._chunks.get()
        if not data:
            self._chunks.put_nowait(b"")  # every later read ends too
        return data

    async def write(self, data: bytes) -> None:
        """Type ``data`` into the console."""
        if self.ended:
            raise AgentError(f"the console of VM {self.vm_uuid} has ended: {self.close_reason}")
        if data:
            await self._send(data)

    async def close(self) -> None:
        """End (if not ended yet) and let go of the console; idempotent."""
        self.end(f"the console of VM {self.vm_uuid} was closed")
        if self._released:
            return
        self._released = True
        for callback in self._on_close:
            callback()
        await self._release()

    @abstractmethod
    async def _send(self, data: bytes) -> None: ...

    @abstractmethod
    async def _release(self) -> None: ...


class OpenConsoles:
    """The console each VM has open: one viewer per VM, the last to open wins.

    The previous viewer is ended and released *before* the new console opens, so a
    backend whose console is exclusive (libvirt) finds it free."""

    def __init__(self) -> None:
        self._open: dict[str, ConsoleStream] = {}

    def get(self, vm_uuid: str) -> ConsoleStream | None:
        return self._open.get(vm_uuid)

    async def open(
        self, vm_uuid: str, opener: Callable[[], Awaitable[ConsoleStream]]
    ) -> ConsoleStream:
        await self._take_over(vm_uuid)
        console = await opener()
        await self._take_over(vm_uuid)  # another open finished meanwhile: this one wins
        self._open[vm_uuid] = console
        console.on_close(lambda: self._forget(vm_uuid, console))
        return console

    async def close_all(self, reason: str = "the agent is stopping") -> None:
        for console in list(self._open.values()):
            console.end(reason, CONSOLE_CLOSE_GOING_AWAY)
            await console.close()

    async def _take_over(self, vm_uuid: str) -> None:
        old = self._open.pop(vm_uuid, None)
        if old is not None:
            old.end(TAKEN_OVER.format(vm_uuid=vm_uuid), CONSOLE_CLOSE_TAKEN_OVER)
            await old.close()

    def _forget(self, vm_uuid: str, console: ConsoleStream) -> None:
        if self._open.get(vm_uuid) is console:
            del self._open[vm_uuid]


def read_log_tail(path: str, limit: int) -> bytes:
    """The last ``limit`` bytes of a console log, from the first line start in them (so
    the viewer gets no half line or half escape sequence); b"" if there is no log."""
    if not path:
        return b""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, os.SEEK_END)
            start = max(0, size - limit)
            f.seek(start)
            data = f.read(limit)
    except OSError as exc:
        log.warning("cannot read the console log %s: %s", path, exc)
        return b""
    if start > 0:
        with contextlib.suppress(ValueError):
            data = data[data.index(b"\n") + 1 :]
    return data
