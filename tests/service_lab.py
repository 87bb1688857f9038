"""Fixtures ``node_service`` and ``sim_node_service`` (registered in tests/conftest.py):
a lab for tests of the node service: a config, the real ``zcli`` and ``zstack-lite``
console scripts run as subprocesses, and a guarantee that the node (and the agents it
owns) are stopped when the test ends, whatever happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.kernel.data_dir import running_pid
from tests.conftest import write_config

VENV_BIN = Path(sys.executable).parent
ZCLI = VENV_BIN / "zcli"
ZSTACK_LITE = VENV_BIN / "zstack-lite"


@dataclass
class Result:
    pid: int
    rc: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def finish(proc: subprocess.Popen[str], timeout: float = 300) -> Result:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"{proc.args} hung; stderr: {err}")
    return Result(proc.pid, proc.returncode, out, err)


@dataclass
class ServiceLab:
    config: Path
    data_dir: Path
    env: dict[str, str]

    def spawn(self, program: Path, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(program), *args],
            env=self.env,
            text=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def zcli(self, *args: str) -> Result:
        return finish(self.spawn(ZCLI, *args))

    def ok(self, *args: str) -> Any:
        """``zcli args`` must succeed: its reply's inventory (or inventories)."""
        res = self.zcli(*args)
        assert res.rc == 0, f"zcli {' '.join(args)}: {res.err}"
        reply = res.json()
        return reply["inventories"] if "inventories" in reply else reply.get("inventory")

    def zcli_many(self, *calls: Sequence[str]) -> list[Result]:
        """Start every call at once; their results in the same order."""
        procs = [self.spawn(ZCLI, *call) for call in calls]
        return [finish(p) for p in procs]

    def service(self, *args: str) -> Result:
        return finish(self.spawn(ZSTACK_LITE, *args))

    @property
    def node_pid(self) -> int | None:
        return running_pid(self.data_dir)

    def kill_node(self) -> int:
        """SIGKILL the node, as a crash would; its pid."""
        pid = self.node_pid
        assert pid, "no node runs"
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while running_pid(self.data_dir) is not None:
            assert time.monotonic() < deadline, "the killed node still holds the lock"
            time.sleep(0.02)
        return pid

    def reset(self, check: bool = True) -> Result:
        """``zstack-lite reset --yes``: everything the lab made goes, on the host too, and
        the data dir; ``check``: insist it succeeded."""
        res = finish(self.spawn(ZSTACK_LITE, "reset", "--yes"), timeout=900)
        assert not check or res.rc == 0, f"reset failed: {res.out}{res.err}"
        return res

    def stop(self) -> None:
        """Take the lab away as a user would (``zstack-lite reset --yes``: its node, agents,
        routers and files); then end any process still naming the data dir (if the reset
        failed) so that a failed test leaks nothing."""
        try:
            if self.data_dir.exists() or self.node_pid is not None:
                self.reset()
        finally:
            for pid in processes_naming(self.data_dir):
                os.kill(pid, signal.SIGKILL)


def processes_naming(path: Path) -> list[int]:
    """Pids of processes whose command line names ``path``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append(int(entry))
    return found


def service_lab(directory: Path, body: str = "") -> ServiceLab:
    config = write_config(directory, body)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZSTACK_LITE_")}
    env["ZSTACK_LITE_CONFIG"] = str(config)
    return ServiceLab(config, directory / "data", env)


@pytest.fixture
def node_service(tmp_path: Path) -> Iterator[ServiceLab]:
    """A lab with no host (bootstrap none); its node is stopped at the end."""
    the_lab = service_lab(tmp_path)
    try:
        yield the_lab
    finally:
        the_lab.stop()


@pytest.fixture
def sim_node_service(tmp_path: Path) -> Iterator[ServiceLab]:
    """A simulator lab (bootstrap simulator: zone, cluster, host, networks, offering)."""
    the_lab = service_lab(tmp_path, '[bootstrap]\nlocal_host = "simulator"\n')
    try:
        yield the_lab
    finally:
        the_lab.stop()
