"""The byte pump between a serial console and a viewer's websocket, as both ends of the
console protocol (contracts.kvm VM_CONSOLE_STREAM) run it: the agent in front of the
hypervisor's console, the management node in front of the agent's websocket."""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiohttp import WSMsgType, web

from contracts.kvm import CONSOLE_CLOSE_NORMAL

log = logging.getLogger(__name__)


class ConsoleBytes(Protocol):
    """What the pump needs of a console: bytes both ways, and why it ended."""

    vm_uuid: str
    close_code: int | None
    close_reason: str

    async def read(self) -> bytes: ...

    async def write(self, data: bytes) -> None: ...


def close_reason(text: str) -> bytes:
    """A websocket close reason: at most 123 bytes of UTF-8, cut at a character."""
    return text.encode()[:123].decode(errors="ignore").encode()


async def pump(
    console: ConsoleBytes, ws: web.WebSocketResponse, dropped: tuple[type[Exception], ...]
) -> None:
    """Until either side ends: output to the viewer, the viewer's frames as input (an
    input that fails with one of ``dropped`` is logged and dropped).  The console ending
    closes the websocket with its code and reason; the viewer leaving returns (the caller
    closes the console)."""

    async def output() -> None:
        while data := await console.read():
            await ws.send_bytes(data)
        await ws.close(
            code=console.close_code or CONSOLE_CLOSE_NORMAL,
            message=close_reason(console.close_reason),
        )

    async def typed() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                data = msg.data
            elif msg.type == WSMsgType.TEXT:
                data = msg.data.encode()
            else:
                continue
            try:
                await console.write(data)
            except dropped as exc:
                log.info("input to VM %s's console dropped: %s", console.vm_uuid, exc)

    out = asyncio.create_task(output())
    inp = asyncio.create_task(typed())
    try:
        done, _ = await asyncio.wait({out, inp}, return_when=asyncio.FIRST_COMPLETED)
        if out in done:
            await inp  # the close above ends the viewer's frames
        for task in done:
            task.result()
    finally:
        for task in (out, inp):
            task.cancel()
        await asyncio.gather(out, inp, return_exceptions=True)
