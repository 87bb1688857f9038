"""zcli end to end: the real console script, run as subprocesses on a temp data dir.

A ``sitecustomize`` put on PYTHONPATH journals, in every process, when the data dir's
lock is taken and released and when the database is opened and closed; the journal
shows who became the node and that no two processes ever held the database as nodes
at once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.host import global_config as host_config
from core.image import global_config as image_config
from core.kernel.node import ManagementNode
from core.kvm import global_config as kvm_config
from core.operation_log import global_config as oplog_config
from core.virtual_router import global_config as vr_config
from core.vm import global_config as vm_config
from tests.conftest import load_props, write_config

VENV_BIN = Path(sys.executable).parent
ZCLI = VENV_BIN / "zcli"
PYTHON = VENV_BIN / "python"
JOURNAL_ENV = "ZSTACK_TEST_JOURNAL"

SITECUSTOMIZE = f"""
import os

_journal = os.environ.get({JOURNAL_ENV!r})
if _journal:
    from core.kernel import db as _db, node as _node

    def _log(what):
        fd = os.open(_journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, f"{{what}} {{os.getpid()}}\\n".encode())
        finally:
            os.close(fd)

    _acquire, _release = _node.DataDirLock.acquire, _node.DataDirLock.release
    _open, _close = _db.Database.__init__, _db.Database.close

    def acquire(self):
        _acquire(self)
        _log("acquire")

    def release(self):
        if self._fd is not None:
            _log("release")
        _release(self)

    def open_db(self, url):
        _log("db-open")
        _open(self, url)

    def close_db(self):
        _log("db-close")
        _close(self)

    _node.DataDirLock.acquire, _node.DataDirLock.release = acquire, release
    _db.Database.__init__, _db.Database.close = open_db, close_db
"""

NODE_SCRIPT = """
import asyncio, signal, sys
from core.kernel.node import ManagementNode
from core.kernel.properties import load

async def main():
    node = ManagementNode(load(sys.argv[1], env={}))
    await node.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("running", flush=True)
    await stop.wait()
    await node.stop()

asyncio.run(main())
"""


@dataclass
class Lab:
    config: Path
    data_dir: Path
    journal: Path
    env: dict[str, str]

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(ZCLI), *args],
            env=self.env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    def zcli(self, *args: str) -> Result:
        return finish(self.spawn(*args))

    def zcli_many(self, *calls: Sequence[str]) -> list[Result]:
        """Start every call at once; their results in the same order."""
        procs = [self.spawn(*call) for call in calls]
        return [finish(p) for p in procs]

    def events(self) -> list[tuple[str, int]]:
        if not self.journal.exists():
            return []
        out = []
        for line in self.journal.read_text().splitlines():
            what, pid = line.split()
            out.append((what, int(pid)))
        return out

    def value(self, category: str = "kvm", name: str = "vm.migrationQuantity") -> str:
        db = sqlite3.connect(self.data_dir / "zstack.db")
        try:
            (value,) = db.execute(
                "SELECT value FROM global_config WHERE category=? AND name=?", (category, name)
            ).fetchone()
            return value
        finally:
            db.close()


@dataclass
class Result:
    pid: int
    rc: int
    out: str
    err: str

    def json(self) -> dict:
        return json.loads(self.out)


def finish(proc: subprocess.Popen[str]) -> Result:
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"zcli {proc.args} hung; stderr: {err}")
    return Result(proc.pid, proc.returncode, out, err)


@pytest.fixture
def lab(tmp_path: Path) -> Lab:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    config = write_config(tmp_path)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ZSTACK_LITE_") and k not in ("PYTHONPATH", JOURNAL_ENV)
    }
    env.update(
        {
            "ZSTACK_LITE_CONFIG": str(config),
            "PYTHONPATH": str(hooks),
            JOURNAL_ENV: str(tmp_path / "journal"),
        }
    )
    return Lab(config, tmp_path / "data", tmp_path / "journal", env)


def check_exclusive(events: list[tuple[str, int]]) -> list[int]:
    """Assert one holder of the lock at a time, and the DB opened only by the holder.

    Returns the pids that became the node, in order.
    """
    holder: int | None = None
    nodes = []
    for what, pid in events:
        if what == "acquire":
            assert holder is None, f"{pid} took the lock while {holder} held it: {events}"
            holder = pid
            nodes.append(pid)
        elif what == "release":
            assert holder == pid, events
            holder = None
        else:  # db-open / db-close
            assert holder == pid, f"{pid} {what} without holding the lock: {events}"
    assert holder is None, f"{holder} never released the lock"
    return nodes


def query_value(lab: Lab) -> str:
    res = lab.zcli("QueryGlobalConfig", "category=kvm", "name=vm.migrationQuantity")
    assert res.rc == 0, res.err
    (row,) = res.json()["inventories"]
    return row["value"]


# -- the acceptance ------------------------------------------------------------------------


def test_update_global_config_acceptance(lab: Lab) -> None:
    zero, abc = lab.zcli_many(
        ["UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=0"],
        ["UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=abc"],
    )
    assert zero.rc == 1, zero.err
    assert (
        "Error SYS.1007: value '0' of global config kvm.vm.migrationQuantity breaks the "
        "rule: number in range [1, 2147483647]"
    ) in zero.err
    assert zero.json()["success"] is False
    assert abc.rc == 1, abc.err
    assert "value 'abc' of global config kvm.vm.migrationQuantity is not an integer" in abc.err
    assert lab.value() == "2"

    ok = lab.zcli("UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=3")
    assert ok.rc == 0, ok.err
    assert ok.json()["inventory"]["value"] == "3"
    assert query_value(lab) == "3"
    assert lab.value() == "3"
    check_exclusive(lab.events())


def test_delete_inherent_tag_fails(lab: Lab) -> None:
    res = lab.zcli("QuerySystemTag", "tag~=zstack-lite::version::%")
    assert res.rc == 0, res.err
    (tag,) = res.json()["inventories"]
    res = lab.zcli("DeleteTag", f"uuid={tag['uuid']}")
    assert res.rc == 1
    assert f"tag[uuid:{tag['uuid']}] is an inherent system tag, can not be removed" in res.err
    res = lab.zcli("QuerySystemTag", f"uuid={tag['uuid']}")
    assert len(res.json()["inventories"]) == 1


def test_help_usage_errors_and_queries(lab: Lab) -> None:
    every, one, unknown, malformed, bad_cond, unknown_param, bad_param, no_api, count = (
        lab.zcli_many(
            ["help"],
            ["help", "UpdateGlobalConfig"],
            ["NoSuchApi", "a=b"],
            ["UpdateGlobalConfig", "category"],
            ["QueryGlobalConfig", "???"],
            ["UpdateGlobalConfig", "categry=kvm"],
            ["QueryZone", "limit=-1"],
            [],
            ["QueryGlobalConfig", "count=true", "category?=kvm,vm"],
        )
    )
    assert every.rc == 0, every.err
    listed = [line.split()[0] for line in every.out.splitlines()[2:] if line.strip()]
    assert listed == bus_apis(lab)  # every API the bus has, sorted
    assert {
        "ChangeZoneState",
        "CreateSystemTag",
        "CreateUserTag",
        "CreateZone",
        "DeleteTag",
        "DeleteZone",
        "GetGlobalConfigOptions",
        "QueryGlobalConfig",
        "QueryManagementNode",
        "QuerySystemTag",
        "QueryUserTag",
        "QueryZone",
        "ResetGlobalConfig",
        "UpdateGlobalConfig",
        "UpdateZone",
    } <= set(listed)
    assert "Change a global config; the value must pass the config's rules." in every.out

    assert one.rc == 0, one.err
    assert one.out.startswith("UpdateGlobalConfig: Change a global config")
    assert "category  string, required, max length 64" in one.out
    assert "name      string, required, max length 255" in one.out
    assert "value     string, required, max length 2048" in one.out

    assert unknown.rc == 2
    assert "no API named NoSuchApi" in unknown.err
    assert malformed.rc == 2
    assert "argument 'category' is not of the form key=value" in malformed.err
    assert bad_cond.rc == 2
    assert "'???' is not of the form" in bad_cond.err
    assert unknown_param.rc == 2
    assert "UpdateGlobalConfig has no parameter categry" in unknown_param.err
    assert bad_param.rc == 1  # the API itself refuses it
    assert "parameter limit of QueryZone must be in the range" in bad_param.err
    assert no_api.rc == 2  # argparse: the API name is required
    assert count.rc == 0, count.err
    assert count.json()["total"] == 5  # kvm: 2, vm: 3
    check_exclusive(lab.events())


def bus_apis(lab: Lab) -> list[str]:
    """The APIs of a node with the installed plugins (started here, on its own data dir)."""
    props = load_props(write_config(lab.config.parent / "bus-apis"))

    async def names() -> list[str]:
        async with ManagementNode(props, serve_socket=False) as node:
            assert node.bus is not None
            return list(node.bus.messages())

    return asyncio.run(names())


def test_help_for_an_unknown_api(lab: Lab) -> None:
    res = lab.zcli("help", "Nope")
    assert res.rc == 2 and "no API named Nope" in res.err


def test_bad_config_is_a_usage_error(lab: Lab, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[core]\ndata_dir = "data"\nbogus = 1\n')
    res = lab.zcli("--config", str(broken), "help")
    assert res.rc == 2
    assert "unknown global property core.bogus" in res.err


# -- a node running in another process ---------------------------------------------------------


@pytest.fixture
def background_node(lab: Lab) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [str(PYTHON), "-c", textwrap.dedent(NODE_SCRIPT), str(lab.config)],
        env=lab.env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not (lab.data_dir / "node.sock").exists():
            if proc.poll() is not None:
                pytest.fail(f"the node died: {proc.stderr.read() if proc.stderr else ''}")
            assert time.monotonic() < deadline, "the node did not start"
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def test_zcli_goes_through_a_node_running_elsewhere(
    lab: Lab, background_node: subprocess.Popen[str]
) -> None:
    node_pid = background_node.pid
    lock = lab.data_dir / "node.lock"
    assert lock.read_text().strip() == str(node_pid)

    update, mn = lab.zcli_many(
        ["UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=4"],
        ["QueryManagementNode"],
    )
    assert update.rc == 0, update.err
    assert mn.rc == 0, mn.err
    (record,) = mn.json()["inventories"]
    assert record["pid"] == node_pid and record["state"] == "Running"
    assert query_value(lab) == "4"
    zone = lab.zcli("CreateZone", "name=remote")
    assert zone.rc == 0, zone.err

    # no zcli became a node: only the background node ever took the lock or opened the DB
    events = lab.events()
    assert check_exclusive([*events, ("release", node_pid)]) == [node_pid]
    assert {pid for _, pid in events} == {node_pid}
    assert lock.read_text().strip() == str(node_pid)
    assert background_node.poll() is None

    background_node.send_signal(signal.SIGTERM)
    assert background_node.wait(timeout=30) == 0
    assert not (lab.data_dir / "node.sock").exists()
    assert lock.read_text() == ""
    assert lab.value() == "4"  # the node wrote what zcli asked for
    db = sqlite3.connect(lab.data_dir / "zstack.db")
    try:
        assert db.execute("SELECT pid, state FROM management_node").fetchall() == [
            (None, "Stopped")
        ]
        assert db.execute("SELECT name FROM zone").fetchall() == [("remote",)]
    finally:
        db.close()


def test_concurrent_zcli_calls_on_one_data_dir(lab: Lab) -> None:
    values = [str(v) for v in range(3, 9)]
    results = lab.zcli_many(
        *(
            ["UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", f"value={v}"]
            for v in values
        )
    )
    for res in results:
        assert res.rc == 0, res.err
        assert res.json()["inventory"]["value"] in values
    assert lab.value() in values

    nodes = check_exclusive(lab.events())
    assert nodes  # somebody became the node...
    assert set(nodes) <= {r.pid for r in results}
    assert not (lab.data_dir / "node.sock").exists()  # ...and everyone is gone
    assert (lab.data_dir / "node.lock").read_text() == ""

    db = sqlite3.connect(lab.data_dir / "zstack.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        configs = (host_config, image_config, kvm_config, oplog_config, vm_config, vr_config)
        defined = sum(len(m.ALL) for m in configs)
        assert db.execute("SELECT count(*) FROM global_config").fetchone() == (defined,)
        assert db.execute("SELECT count(*) FROM management_node").fetchone() == (1,)
        assert db.execute("SELECT count(*) FROM system_tag").fetchone() == (2,)
    finally:
        db.close()
    assert query_value(lab) == lab.value()
