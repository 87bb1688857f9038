"""zcli's tables and YAML (core.zcli_output), without a node."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from typing import Any

import pytest

from core.zcli_output import render_table, size, to_yaml

TRICKY: dict[str, Any] = {
    "success": True,
    "inventory": {
        "name": "yes",
        "uuid": "0123456789abcdef0123456789abcdef",
        "number-like": "1000",
        "date": "2026-12-04T03:16:09.980439",
        "tag": "zstack-lite::version::0.1.0",
        "colon": "a: b",
        "comment": "a #b",
        "lines": "one\ntwo",
        "unicode": "café ✓",
        "blank": "",
        "none": None,
        "flags": [True, False],
        "empty": {"list": [], "map": {}},
        "refs": [{"uuid": "u1", "sizes": [1, 2.5, -3]}, [["deep"]]],
        "path": "/var/lib/zstack-lite",
        "true": "null",
    },
}


def yaml_python() -> str | None:
    """A Python that has PyYAML (the tests' own, or the system's), to read YAML back."""
    for python in (sys.executable, shutil.which("python3")):
        if (
            python
            and subprocess.run([python, "-c", "import yaml"], capture_output=True).returncode == 0
        ):
            return python
    return None


def test_yaml_reads_back_as_the_same_data() -> None:
    text = to_yaml(TRICKY)
    lines = text.splitlines()
    assert lines[:3] == ["success: true", "inventory:", '  name: "yes"']
    assert '  number-like: "1000"' in lines and "  tag: zstack-lite::version::0.1.0" in lines
    assert '  lines: "one\\ntwo"' in lines and "  none: null" in lines
    assert lines[-1] == '  "true": "null"'
    python = yaml_python()
    if python is None:
        pytest.skip("no Python with PyYAML to read it back (the lines above were checked)")
    read = subprocess.run(
        [python, "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
        input=text,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(read.stdout) == TRICKY


def test_a_table_has_the_kinds_columns_and_fits_the_terminal(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    vms = [
        {"uuid": "a" * 32, "name": "web1", "state": "Running", "cpuNum": 1,
         "memorySize": 268435456, "hostUuid": "b" * 32, "description": "x"},
        {"uuid": "c" * 32, "name": "db", "state": "Stopped", "cpuNum": 2,
         "memorySize": 3 << 30, "hostUuid": None, "description": "y"},
    ]  # fmt: skip
    monkeypatch.setenv("COLUMNS", "200")
    wide = render_table("QueryVmInstance", {"success": True, "inventories": vms}).splitlines()
    assert [line.split() for line in wide] == [
        ["name", "uuid", "state", "cpuNum", "memorySize", "hostUuid"],
        ["web1", "a" * 32, "Running", "1", "256M", "b" * 32],
        ["db", "c" * 32, "Stopped", "2", "3G", "-"],
    ]
    monkeypatch.setenv("COLUMNS", "50")
    narrow = render_table("QueryVmInstance", {"success": True, "inventories": vms}).splitlines()
    assert narrow[0].split() == ["name", "uuid", "state"]  # what fits in 50 columns
    assert max(len(line) for line in narrow) <= 50
    monkeypatch.setenv("COLUMNS", "200")
    other = render_table("GetThings", {"success": True, "inventories": vms, "total": 2})
    assert other.splitlines()[0].split() == [  # unknown kind: the lead, then scalars
        "name", "uuid", "state", "cpuNum", "memorySize", "hostUuid"
    ]  # fmt: skip
    assert other.endswith("\ntotal  2\n")
    assert render_table("QueryZone", {"success": True, "inventories": []}) == "(none)\n"


def test_sizes() -> None:
    assert [size(n) for n in (512, 1024, 268435456, 3 << 30, 84963049472)] == [
        "512", "1K", "256M", "3G", "79.1G"
    ]  # fmt: skip
