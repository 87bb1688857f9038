"""/storage/init and /file/delete through the server (simulator backend, real files)."""

from __future__ import annotations

import os
from pathlib import Path

from agent import protocol as p
from tests.agent.helpers import AgentCaller


async def test_storage_init_makes_the_directory_and_measures_it(
    caller: AgentCaller, tmp_path: Path
) -> None:
    path = tmp_path / "ps" / "nested"
    answer = await caller.ok(p.STORAGE_INIT, {"path": str(path)})
    # QEMU may traverse the directories it makes; nobody but root may list them.
    assert path.is_dir() and (path.stat().st_mode & 0o777) == 0o711
    assert (path.parent.stat().st_mode & 0o777) == 0o711
    stat = os.statvfs(path)
    assert answer["totalCapacity"] == stat.f_blocks * stat.f_frsize
    assert 0 < answer["availableCapacity"] <= answer["totalCapacity"]
    path.chmod(0o755)  # made by an earlier version
    again = await caller.ok(p.STORAGE_INIT, {"path": str(path)})  # idempotent
    assert again["path"] == str(path)
    assert (path.stat().st_mode & 0o777) == 0o711


async def test_storage_init_refuses_a_file_and_a_relative_path(
    caller: AgentCaller, tmp_path: Path
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    answer = await caller.call(p.STORAGE_INIT, {"path": str(a_file)})
    assert answer["success"] is False and "not a directory" in answer["error"]
    answer = await caller.call(p.STORAGE_INIT, {"path": "relative/dir"})
    assert answer["success"] is False and "absolute path" in answer["error"]
    assert not Path("relative").exists()
