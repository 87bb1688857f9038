"""/storage/init and /file/delete through the server (simulator backend, real files)."""

from __future__ import annotations

import os
from pathlib import Path

from contracts import kvm as p
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


async def test_volume_delete_takes_the_vms_emptied_directory_along(
    caller: AgentCaller, tmp_path: Path
) -> None:
    vm_dir = tmp_path / "rootvolumes" / f"vm-{'a' * 32}"
    vm_dir.mkdir(parents=True)
    (vm_dir / "one.qcow2").write_bytes(b"")
    (vm_dir / "two.qcow2").write_bytes(b"")
    await caller.ok(p.VOLUME_DELETE, {"installPath": str(vm_dir / "one.qcow2")})
    assert vm_dir.is_dir()  # still holds a volume
    await caller.ok(p.VOLUME_DELETE, {"installPath": str(vm_dir / "two.qcow2")})
    assert not vm_dir.exists() and (tmp_path / "rootvolumes").is_dir()
    await caller.ok(p.VOLUME_DELETE, {"installPath": str(vm_dir / "two.qcow2")})  # idempotent

    # Only a VM's volume directory goes: not one of another name, not through '..'.
    other = tmp_path / "volumes"
    other.mkdir()
    (other / "v.qcow2").write_bytes(b"")
    await caller.ok(p.VOLUME_DELETE, {"installPath": str(other / "v.qcow2")})
    assert other.is_dir()
    answer = await caller.call(p.VOLUME_DELETE, {"installPath": f"{other}/../{other.name}/v.qcow2"})
    assert answer["success"] is False and "'..'" in answer["error"]


async def test_vm_expunge_deletes_only_the_vms_own_console_log(
    caller: AgentCaller, tmp_path: Path
) -> None:
    vm_uuid = "b" * 32
    consoles = tmp_path / "consoles"
    consoles.mkdir()
    log = consoles / f"{vm_uuid}.log"
    for path in (log, consoles / f"{vm_uuid}.log.0", consoles / f"{vm_uuid}.log.1"):
        path.write_text("boot\n")
    neighbour = consoles / f"{'c' * 32}.log"
    neighbour.write_text("boot\n")

    answer = await caller.call(p.VM_EXPUNGE, {"vmUuid": vm_uuid, "consoleLogPath": str(neighbour)})
    assert answer["success"] is False and "not the console log of VM" in answer["error"]
    await caller.ok(p.VM_EXPUNGE, {"vmUuid": vm_uuid, "consoleLogPath": str(log)})
    assert sorted(p.name for p in consoles.iterdir()) == [neighbour.name]
    await caller.ok(p.VM_EXPUNGE, {"vmUuid": vm_uuid, "consoleLogPath": str(log)})  # idempotent
    answer = await caller.call(
        p.VM_EXPUNGE, {"vmUuid": vm_uuid, "consoleLogPath": f"{consoles}/x/../{vm_uuid}.log"}
    )
    assert answer["success"] is False and "'..'" in answer["error"]
