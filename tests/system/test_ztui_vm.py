"""A new user's first VM: ztui in a real terminal (tmux) on a fresh data dir, as `make run`
starts it, bootstraps the local KVM host with the tiny image, an offering and a private
network with DHCP, DNS and SNAT; keystrokes create a VM that reaches Running with its IP.
Then its console: the tiny guest's shell runs a command with more than a screenful of
output, whose last line and the prompt after it are on the screen (at 120x40, then at
80x24), and again once the console is opened anew."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.guest_image import build as guest_image
from core.host.local_agent import free_port
from tests.conftest import write_config
from tests.system.test_ztui_service import Tmux

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]
IMAGE = REPO / "build" / "tiny-guest.qcow2"
IP_ON_ROW = re.compile(r"\btiny\s+Running\s+(\d+\.\d+\.\d+\.\d+)\b")
PROMPT = re.compile(r"^\S* ?# ?$")
"""The tiny guest's busybox shell prompt (``/ # ``, ``~ # ``) alone on its row."""
SCROLLBAR = " ▁▂▃▄▅▆▇█▏▕▌▐"
END = "ZSL-END"


def rows(screen: str) -> list[str]:
    """The screen's rows, without a scrollbar at the right edge."""
    return [row.rstrip(SCROLLBAR) for row in screen.splitlines()]


def prompt_after_end(screen: str) -> bool:
    """Whether the screen shows the output's last line with a prompt on the next row."""
    shown = rows(screen)
    return any(
        row == END and i + 1 < len(shown) and PROMPT.match(shown[i + 1])
        for i, row in enumerate(shown)
    )


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
    finally:  # ztui left the node running: reset takes the lab away, node included
        subprocess.run(
            [str(BIN / "zstack-lite"), "--config", str(config), "reset", "--yes"],
            capture_output=True,
            timeout=300,
        )
        shutil.rmtree(root, ignore_errors=True)


def test_create_a_vm_with_keystrokes_then_use_its_console(lab_config: Path) -> None:
    tmux = Tmux(f"zstack-lite-test-vm-{os.getpid()}")
    data = lab_config.parent / "data"
    try:
        # (under pytest the C environment has COLUMNS=80 LINES=24: ztui would take them over
        # the pane's size)
        tmux.run(
            "new-session", "-d", "-s", "ztui", "-x", "120", "-y", "40",
            f"env -u COLUMNS -u LINES {BIN / 'ztui'} --config {lab_config}",
        )  # fmt: skip
        screen = tmux.screen
        wait_for(lambda: "service (node.sock)" in screen(), "the dashboard", screen, 120)
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

        # its console: the shell's prompt, then more than a screenful of output
        tmux.run("send-keys", "-t", "ztui", "c")
        wait_for(lambda: "console tiny" in screen(), "the console", screen, 30)

        def prompt_shown() -> bool:
            tmux.run("send-keys", "-t", "ztui", "Enter")  # (the guest may still be booting)
            time.sleep(1)
            return any(PROMPT.match(row) for row in rows(screen()))

        wait_for(prompt_shown, "the guest's shell prompt", screen, 120)
        tmux.run("send-keys", "-t", "ztui", "-l", f"seq 1 200; echo {END}")
        tmux.run("send-keys", "-t", "ztui", "Enter")
        wait_for(lambda: prompt_after_end(screen()), f"{END} and the prompt", screen, 60)
        tmux.run("resize-window", "-t", "ztui", "-x", "80", "-y", "24")
        wait_for(lambda: prompt_after_end(screen()), f"{END} at 80x24", screen, 30)

        # opened anew, the console shows the bottom of its log
        tmux.run("send-keys", "-t", "ztui", "C-]")
        wait_for(lambda: "IPs" in screen(), "the VMs view again", screen, 30)
        tmux.run("send-keys", "-t", "ztui", "c")
        wait_for(lambda: prompt_after_end(screen()), f"{END} after attaching again", screen, 30)
        tmux.run("send-keys", "-t", "ztui", "C-]")
        wait_for(lambda: "IPs" in screen(), "the VMs view again", screen, 30)
        tmux.run("send-keys", "-t", "ztui", "q")
        wait_for(lambda: not tmux.alive(), "ztui to quit", screen, 60)
        assert (data / "node.sock").exists()  # the node goes on without ztui
    finally:
        tmux.kill()
