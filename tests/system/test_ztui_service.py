"""ztui is a client of the node service, in a real terminal: it starts the service when
none runs and says so, zcli calls on the same data dir go through that node, and quitting
ztui leaves the node running."""

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

    def alive(self) -> bool:
        """Whether the session still runs (it ends when ztui quits)."""
        return (
            subprocess.run(
                [*self.base, "has-session", "-t", "ztui"], capture_output=True
            ).returncode
            == 0
        )

    def kill(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "config.toml"
    path.write_text(f'[core]\ndata_dir = "{tmp_path / "data"}"\n')
    try:
        yield path
    finally:  # whatever happened, the node this test started is stopped
        subprocess.run(
            [str(BIN / "zstack-lite"), "--config", str(path), "stop"],
            capture_output=True,
            timeout=120,
        )


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


def test_ztui_starts_the_service_and_leaves_it_running(config: Path, tmux: Tmux) -> None:
    data = config.parent / "data"
    tmux.run(
        "new-session",
        "-d",
        "-s",
        "ztui",
        "-x",
        "120",
        "-y",
        "40",
        f"{BIN / 'ztui'} --config {config}",
    )
    wait_for(lambda: (data / "node.sock").exists(), "the node's socket")
    node_pid = int((data / "node.lock").read_text().strip())
    wait_for(lambda: "started the management node" in tmux.screen(), "the announcement")
    # The announcement names the pid too, before the dashboard has attached: wait for the
    # dashboard's own line, which says how ztui reaches the node.
    wait_for(
        lambda: f"service (node.sock) · pid {node_pid}" in tmux.screen(),
        "the dashboard's Node line: attached to the service, with the node's pid",
    )
    ztui_pid = int(tmux.run("display-message", "-p", "-t", "ztui", "#{pane_pid}").strip())
    assert node_pid != ztui_pid  # ztui is not the node

    done = zcli(
        config, "UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=4"
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # the node ran: zcli started nothing
    refused = zcli(
        config, "UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=0"
    )
    assert refused.returncode == 1
    assert "number in range [1, 2147483647]" in refused.stderr
    node = json.loads(zcli(config, "QueryManagementNode").stdout)["inventories"][0]
    assert node["pid"] == node_pid

    tmux.run("send-keys", "-t", "ztui", "6")
    tmux.run("send-keys", "-t", "ztui", "r")
    wait_for(
        lambda: any(
            "vm.migrationQuantity" in line and " 4 " in line for line in tmux.screen().splitlines()
        ),
        "the new value on screen",
    )
    tmux.run("send-keys", "-t", "ztui", "q")
    wait_for(lambda: not tmux.alive(), "ztui to quit", 15)
    # Quitting ztui left the node running, with its socket, and the value it stored.
    assert (data / "node.lock").read_text().strip() == str(node_pid)
    after = zcli(config, "QueryGlobalConfig", "category=kvm", "name=vm.migrationQuantity")
    assert after.returncode == 0, after.stderr
    assert after.stderr == ""
    assert json.loads(after.stdout)["inventories"][0]["value"] == "4"
    stopped = subprocess.run(
        [str(BIN / "zstack-lite"), "--config", str(config), "stop"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stopped.returncode == 0, stopped.stderr
    assert not (data / "node.sock").exists()
