"""A new user's first VM: ztui in a real terminal (tmux) on a fresh data dir, as `make run`
starts it, bootstraps the local KVM host with the tiny image, an offering and a private
network with DHCP, DNS and SNAT; keystrokes create a VM that reaches Running with its IP."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.guest_image import build as guest_image
from core.host.local_agent import free_port
from core.kernel.node import ManagementNode
from tests.conftest import load_props, write_config
from tests.system.cleanup import api_teardown, by_hand
from tests.system.test_ztui_hosts_node import Tmux

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "build" / "tiny-guest.qcow2"
IP_ON_ROW = re.compile(r"\btiny\s+Running\s+(\d+\.\d+\.\d+\.\d+)\b")


def wait_for(
    check: Callable[[], bool], what: str, screen: Callable[[], str], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the screen:\n{screen()}")
        time.sleep(0.2)


@pytest.fixture
def lab_config() -> Iterator[Path]:
    """A data dir where QEMU can reach the storage; afterwards everything is deleted."""
    guest_image.main(["--output", str(IMAGE)])  # builds only if missing or stale
    root = Path(tempfile.mkdtemp(prefix="zsl-test-ztui-", dir="/var/tmp"))
    root.chmod(0o755)
    config = write_config(
        root,
        f'[agent]\nport = {free_port()}\n[bootstrap]\nlocal_host = "kvm"\nimage = "{IMAGE}"\n',
    )
    try:
        yield config
    finally:
        asyncio.run(_clean(config))
        shutil.rmtree(root, ignore_errors=True)


async def _clean(config: Path) -> None:
    node = ManagementNode(load_props(config), serve_socket=False)
    try:
        await node.start()
        await api_teardown(node)
    finally:
        if node.running:
            await node.stop()
        by_hand(config.parent)  # the local KVM agent outlives nodes by design


def test_create_a_vm_with_keystrokes_and_read_its_ip(lab_config: Path) -> None:
    tmux = Tmux(f"zstack-lite-test-vm-{os.getpid()}")
    data = lab_config.parent / "data"
    try:
        tmux.run(
            "new-session", "-d", "-s", "ztui", "-x", "120", "-y", "40",
            f"{BIN / 'ztui'} --config {lab_config}",
        )  # fmt: skip
        screen = tmux.screen
        wait_for(lambda: "in-process" in screen(), "the dashboard", screen, 120)
        tmux.run("send-keys", "-t", "ztui", "2")
        wait_for(lambda: "IPs" in screen(), "the VMs view", screen, 30)
        tmux.run("send-keys", "-t", "ztui", "n")
        wait_for(lambda: "Instance offering" in screen(), "the create dialog", screen, 30)
        wait_for(lambda: "loading…" not in screen(), "the dialog's choices", screen, 30)
        tmux.run("send-keys", "-t", "ztui", "-l", "tiny")
        tmux.run("send-keys", "-t", "ztui", "C-s")
        wait_for(
            lambda: IP_ON_ROW.search(screen()) is not None, "tiny Running with its IP", screen, 240
        )
        match = IP_ON_ROW.search(screen())
        assert match is not None
        ip = match.group(1)
        assert not ip.startswith("192.168.253.")  # the private network's, not the public one's
        tmux.run("send-keys", "-t", "ztui", "q")
        wait_for(lambda: not (data / "node.sock").exists(), "ztui to stop its node", screen, 60)
    finally:
        tmux.kill()
