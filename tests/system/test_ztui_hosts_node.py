"""ztui hosts the node: zcli calls on the same data dir go through it, in a real terminal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.system
BIN = Path(sys.executable).parent


class Tmux:
    """A private tmux server (its own socket name), killed at the end."""

    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-L", name]

    def run(self, *args: str) -> str:
        return subprocess.run(
            [*self.base, *args], check=True, capture_output=True, text=True
        ).stdout

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", "ztui")

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'[core]\ndata_dir = "{tmp_path / "data"}"\n')
    return path


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux(f"zstack-lite-test-{os.getpid()}")
    try:
        yield server
    finally:
        server.kill()


def zcli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_LITE_")}
    env["ZSTACK_LITE_CONFIG"] = str(config)
    return subprocess.run(
        [str(BIN / "zcli"), *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_zcli_goes_through_the_node_ztui_hosts(config: Path, tmux: Tmux) -> None:
    data = config.parent / "data"
    tmux.run(
        "new-session",
        "-d",
        "-s",
        "ztui",
        "-x",
        "80",
        "-y",
        "24",
        f"{BIN / 'ztui'} --config {config}",
    )
    wait_for(lambda: (data / "node.sock").exists(), "ztui's node socket")
    ztui_pid = (data / "node.lock").read_text().strip()
    wait_for(lambda: "in-process" in tmux.screen(), "the dashboard")

    done = zcli(
        config, "UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=4"
    )
    assert done.returncode == 0, done.stderr
    refused = zcli(
        config, "UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=0"
    )
    assert refused.returncode == 1
    assert "number in range [1, 2147483647]" in refused.stderr

    # The calls were served by ztui's node: it still holds the lock, and it records its pid.
    assert (data / "node.lock").read_text().strip() == ztui_pid
    node = json.loads(zcli(config, "QueryManagementNode").stdout)["inventories"][0]
    assert str(node["pid"]) == ztui_pid

    tmux.run("send-keys", "-t", "ztui", "6")
    tmux.run("send-keys", "-t", "ztui", "r")
    wait_for(
        lambda: any(
            "vm.migrationQuantity" in line and " 4 " in line for line in tmux.screen().splitlines()
        ),
        "the new value on screen",
    )

    tmux.run("send-keys", "-t", "ztui", "q")
    wait_for(lambda: not (data / "node.sock").exists(), "ztui to stop its node")
    # The data dir is free again: zcli becomes the node itself and sees the stored value.
    after = zcli(config, "QueryGlobalConfig", "category=kvm", "name=vm.migrationQuantity")
    assert after.returncode == 0, after.stderr
    assert json.loads(after.stdout)["inventories"][0]["value"] == "4"
