"""tests/no_skips.py: under make test a skipped test or module fails the run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.no_skips import NO_SKIPS_ENV

REPO = Path(__file__).resolve().parent.parent
INNER = """
import pytest


def test_runs():
    pass


def test_skips():
    pytest.skip("no libvirtd on qemu:///system")


@pytest.mark.skipif(True, reason="needs root")
def test_skipped_by_mark():
    pass
"""
INNER_MODULE = """
import pytest

pytest.skip("/usr/sbin/dnsmasq is missing", allow_module_level=True)
"""


@pytest.mark.parametrize("no_skips", [True, False])
def test_a_skip_fails_under_make_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, no_skips: bool
) -> None:
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    if no_skips:
        monkeypatch.setenv(NO_SKIPS_ENV, "1")
    else:
        monkeypatch.delenv(NO_SKIPS_ENV, raising=False)
    pytester.makepyfile(test_inner=INNER, test_module=INNER_MODULE)

    def run(name: str) -> pytest.RunResult:
        return pytester.runpytest_subprocess(name, "-p", "tests.no_skips", "-p", "no:cacheprovider")

    tests, module = run("test_inner.py"), run("test_module.py")
    if not no_skips:
        tests.assert_outcomes(passed=1, skipped=2)
        module.assert_outcomes(skipped=1)
        return
    tests.assert_outcomes(passed=1, failed=1, errors=1)  # a skipif mark skips in setup
    tests.stdout.fnmatch_lines_random(
        [
            "*skipped under make test, which runs every test: *no libvirtd on qemu:///system*",
            "*skipped under make test, which runs every test: *needs root*",
        ]
    )
    # A module that skips as a whole stops the run at collection, saying why.
    module.assert_outcomes(errors=1)
    module.stdout.fnmatch_lines(["*skipped under make test, *: *dnsmasq is missing*"])
