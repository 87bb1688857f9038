"""The session check of tests/host_leaks.py, shown failing on a deliberately leaked process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests import host_leaks

REPO = Path(__file__).resolve().parent.parent

INNER = """
import subprocess
import sys
from pathlib import Path


def start(name):
    code = "import time; time.sleep(300)"
    return subprocess.Popen(
        [sys.executable, "-c", code, "-m", "agent.main", "--marker", name],
        start_new_session=True,
    )


def test_stops_its_agent():
    proc = start("zsl-stopped")
    Path("stopped.pid").write_text(str(proc.pid))
    proc.terminate()
    proc.wait()


def test_leaks_an_agent():
    Path("leaked.pid").write_text(str(start("zsl-leaked").pid))
"""


def test_a_leaked_process_fails_the_session(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(test_inner=INNER)
    try:
        result = pytester.runpytest_subprocess(
            "-p", "tests.host_leaks", "-o", "host_leaks_settle=0", "-p", "no:cacheprovider"
        )
    finally:
        pid_file = pytester.path / "leaked.pid"
        leaked = int(pid_file.read_text()) if pid_file.exists() else 0
        if leaked:
            os.kill(leaked, signal.SIGKILL)
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [
            "*= host leaks =*",
            "* project host object(s) left behind by this session (the run fails):",
            f"  LEAKED process {leaked}: * -m agent.main --marker zsl-leaked",
        ]
    )
    stopped = (pytester.path / "stopped.pid").read_text()
    assert f"process {stopped}:" not in result.stdout.str()


@pytest.mark.parametrize(
    ("cmdline", "project"),
    [
        ("/v/bin/python -m agent.main --data-dir /x", True),
        ("/v/bin/python -m virtual_router.main --socket /s", True),
        ("/v/bin/python -m core.daemon serve", True),
        ("/v/bin/python /v/bin/zstack-lite start", True),
        ("/usr/sbin/dnsmasq --keep-in-foreground --conf-file=/d/dnsmasq.conf", True),
        ("/usr/sbin/dnsmasq --conf-file=/var/lib/libvirt/dnsmasq/default.conf", False),
        ("/usr/bin/qemu-system-x86_64 -name guest=zsl-1f,debug-threads=on", True),
        ("/usr/bin/qemu-system-x86_64 -name guest=someone-else", False),
        ("qemu-img info /tmp/pytest-of-root/pytest-1/t0/disk.qcow2", True),
        ("qemu-img info /tmp/pytest-of-root/pytest-10/t0/disk.qcow2", False),
        ("/v/bin/python -m pytest tests/agent", False),
        ("sleep 5", False),
    ],
)
def test_what_counts_as_a_project_process(cmdline: str, project: bool) -> None:
    basetemp = "/tmp/pytest-of-root/pytest-1"
    assert host_leaks.is_project_process(cmdline.split(), basetemp, False) is project
    assert host_leaks.is_project_process(["sleep", "5"], basetemp, True)  # in a zsl netns
