"""Under ``make test`` (which sets ZSL_NO_SKIPS=1) a test that skips fails instead: the
system tests skip where they cannot run (no root, no libvirtd, a tool missing), and the
suite must not lose them unnoticed on a machine where ``make services`` did not work."""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

NO_SKIPS_ENV = "ZSL_NO_SKIPS"


def _refuse_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and os.environ.get(NO_SKIPS_ENV) == "1":
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under make test, which runs every test: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    _refuse_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
    report = yield
    _refuse_skip(report)
    return report
