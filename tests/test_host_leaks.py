"""The session check of tests/host_leaks.py, shown failing on a deliberately leaked process."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

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
        leaked = int((pytester.path / "leaked.pid").read_text())
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
