"""The libvirt backend's console on libvirt's test driver: only the refusals (the test
driver has no console; tests/system/test_vm_console.py drives a real one).  The driver's
host is shared by the whole process: the domain made here is undefined at the end."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.acceleration import FixedAcceleration
from agent.backend import VmSpec
from agent.libvirt_backend import LibvirtBackend
from agentkit.errors import AgentError


@pytest.fixture
async def backend() -> AsyncIterator[LibvirtBackend]:
    b = LibvirtBackend("test:///default", probe=FixedAcceleration("tcg"))
    await b.start()
    try:
        yield b
    finally:
        await b.close()


async def test_refusals_are_clear(backend: LibvirtBackend, tmp_path: Path) -> None:
    with pytest.raises(AgentError, match=r"^VM con1 has no domain zsl-con1 on this host$"):
        await backend.vm_console_open("con1")
    root = tmp_path / "con1.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(root), "1M"], check=True)
    spec = VmSpec(
        vm_uuid="con1",
        vm_name="t",
        cpu_num=1,
        memory_size=64 * 1024**2,
        root_volume_path=str(root),
    )
    await backend.vm_start(spec)
    try:
        with pytest.raises(
            AgentError, match=r"^cannot open the console of VM con1: .*not supported"
        ):
            await backend.vm_console_open("con1")
        assert backend.consoles.get("con1") is None
        await backend.vm_stop("con1", "cold", 1)
        with pytest.raises(AgentError, match=r"^VM con1 is Stopped; its console cannot be opened$"):
            await backend.vm_console_open("con1")
    finally:
        await backend.vm_destroy("con1")
