"""A tiny guest's serial console on qemu:///system, through the core: type, read, take over.

The node, the tiny guest image and the teardown (VMs destroyed and expunged, networks
deleted, domains undefined, the agent stopped, files removed, even when the test fails)
are test_vm_libvirt's."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contracts.kvm import CONSOLE_CLOSE_NORMAL, CONSOLE_CLOSE_TAKEN_OVER
from core.kernel.node import ManagementNode
from core.vm.console import VmConsoleStream, open_vm_console
from tests.conftest import ok
from tests.system.test_vm_libvirt import IMAGE, MiB, node  # noqa: F401 - node: the fixture

pytestmark = pytest.mark.system
BOOT_TIMEOUT = 120.0


class Viewer:
    """Reads a console in the background, so a test can wait for text with a deadline."""

    def __init__(self, stream: VmConsoleStream) -> None:
        self.stream = stream
        self.output = bytearray()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while data := await self.stream.read():
            self.output += data

    async def wait_for(self, wanted: bytes, since: int = 0, timeout: float = 30.0) -> None:
        async def seen() -> None:
            while wanted not in self.output[since:]:
                if self.reader.done():
                    raise AssertionError(
                        f"the console ended ({self.stream.close_code} "
                        f"{self.stream.close_reason}) before {wanted!r}: {bytes(self.output)!r}"
                    )
                await asyncio.sleep(0.1)

        try:
            await asyncio.wait_for(seen(), timeout)
        except TimeoutError:
            tail = bytes(self.output[-500:])
            raise AssertionError(
                f"no {wanted!r} within {timeout:g}s; last output {tail!r}"
            ) from None

    async def shell_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Press Enter until a prompt answers (the guest may still be booting)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            mark = len(self.output)
            await self.stream.write(b"\n")
            try:
                await self.wait_for(b"# ", mark, timeout=3)
                return
            except AssertionError:
                if loop.time() > deadline:
                    raise

    async def run(self, line: bytes, answer: bytes) -> None:
        mark = len(self.output)
        await self.stream.write(line)
        await self.wait_for(answer, mark)

    async def ended(self, timeout: float = 30.0) -> None:
        await asyncio.wait_for(asyncio.shield(self.reader), timeout)

    async def close(self) -> None:
        await self.stream.close()
        self.reader.cancel()
        await asyncio.gather(self.reader, return_exceptions=True)


async def test_console_of_a_tiny_guest(node: ManagementNode) -> None:  # noqa: F811
    image = await ok(node, "AddImage", name="tiny", url=str(IMAGE))
    offering = await ok(node, "CreateInstanceOffering", name="tiny", cpuNum=1, memorySize=256 * MiB)
    vm: dict[str, Any] = await ok(
        node,
        "CreateVmInstance",
        name="console-1",
        instanceOfferingUuid=offering["uuid"],
        imageUuid=image["uuid"],
    )
    viewers: list[Viewer] = []
    try:
        first = Viewer(await open_vm_console(node, vm["uuid"]))
        viewers.append(first)
        await first.shell_ready()
        await first.run(b"echo zsl-$((6*7))\n", b"zsl-42")

        # A second viewer takes the console over; the first is told so.
        second = Viewer(await open_vm_console(node, vm["uuid"]))
        viewers.append(second)
        await first.ended()
        assert first.stream.close_code == CONSOLE_CLOSE_TAKEN_OVER, first.stream.close_reason
        assert second.stream.history > 0
        await second.wait_for(b"zsl-42")  # the log's tail came first
        await second.shell_ready(timeout=30)
        await second.run(b"echo again-$((1+1))\n", b"again-2")

        # The VM stopping ends the stream normally.
        await ok(node, "StopVmInstance", uuid=vm["uuid"], type="cold")
        await second.ended()
        assert second.stream.close_code == CONSOLE_CLOSE_NORMAL, second.stream.close_reason
        assert "closed (VM stopped)" in second.stream.close_reason
    finally:
        for viewer in viewers:
            await viewer.close()
