"""Session check: the test suite leaves the host as it found it.

At session start and at session end this plugin lists the host objects of the project:

* processes: ``-m agent…``, ``-m virtual_router…``, ``-m core…``, ``-m ztui``, the
  ``zstack-lite``/``ztui``/``zcli`` scripts, dnsmasq (libvirt's own excepted), qemu running a
  ``zsl-`` domain, anything whose command line names this session's basetemp, and anything
  running in a ``zsl`` network namespace; pytest's own process and its ancestors never count;
* links and network namespaces whose name starts with ``zsl``;
* nftables tables whose name starts with ``zsl``, and the rules of the shared
  ``inet zsl_host_nat`` table;
* libvirt domains ``zsl-*`` on qemu:///system (when libvirtd answers);
* files under ``/run/zstack-lite``, ``/var/lib/zstack-lite``, ``/tmp/zsl*`` and
  ``/var/tmp/zsl*`` (and each ``zsl*`` entry of the temp dirs itself); an empty directory is
  not a leak.

Whatever is there at the end and was not at the start is a leak: the session fails (exit
status 1) and the terminal summary lists each object (kind, name; pid and command line for a
process).  What vanished is only reported.  The plugin removes nothing: a leak is fixed where
it is made.  Objects stopped asynchronously get a few seconds to go before they count.

The check is global, as CI runs alone: a run beside other test runs on the same host may see
their objects appear.  A leaked process says whether its command line names this session's
basetemp (then it is this session's for sure).  ``-p no:tests.host_leaks`` turns it off.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PREFIX = "zsl"
MODULE_PREFIXES = ("agent", "virtual_router", "core", "ztui")
SCRIPTS = frozenset({"zstack-lite", "ztui", "zcli"})
SHARED_NFT_TABLES = (("inet", "zsl_host_nat"),)
FILE_ROOTS = (Path("/run/zstack-lite"), Path("/var/lib/zstack-lite"))
TMP_DIRS = (Path("/tmp"), Path("/var/tmp"))
NETNS_DIR = Path("/run/netns")
LIBVIRT_URI = "qemu:///system"
SETTLE_INI = "host_leaks_settle"
"""Seconds objects still going away at the end (a SIGTERMed agent) get before they count."""
COMMAND_TIMEOUT = 15.0


@dataclass(frozen=True, order=True)
class HostObject:
    kind: str
    name: str
    detail: str = ""
    note: str = field(default="", compare=False)
    """Shown, not compared (a process's namespace may go before it does)."""

    def __str__(self) -> str:
        detail = f": {self.detail}" if self.detail else ""
        return f"{self.kind} {self.name}{detail}{self.note}"


# -- processes ----------------------------------------------------------------------------
def _module(argv: list[str]) -> str:
    """The module a Python command line runs with ``-m`` (empty if none)."""
    for flag, value in itertools.pairwise(argv):
        if flag == "-m":
            return value
    return ""


def is_project_process(argv: list[str], basetemp: str, in_project_netns: bool) -> bool:
    module = _module(argv).split(".")[0]
    program = os.path.basename(argv[0])
    if in_project_netns or module in MODULE_PREFIXES:
        return True
    if SCRIPTS & {os.path.basename(a) for a in argv[:2]}:
        return True
    if basetemp and any(mentions(a, basetemp) for a in argv):
        return True
    if program == "dnsmasq":
        return not any(a.startswith("--conf-file=/var/lib/libvirt/") for a in argv)
    if program.startswith("qemu-system"):
        return any(f"guest={PREFIX}-" in a for a in argv)
    return False


def mentions(text: str, path: str) -> bool:
    """Whether ``text`` names ``path`` or something under it (``pytest-1``: not ``pytest-10``)."""
    return re.search(re.escape(path) + r"(?=/|\s|$)", text) is not None


def _own_tree() -> set[int]:
    """This process and its ancestors (pytest, make, the shell): never a leak."""
    pids, pid = set(), os.getpid()
    while pid > 0 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return pids


def _netns_inodes() -> dict[int, str]:
    found = {}
    for path in _entries(NETNS_DIR, PREFIX + "*"):
        try:
            found[path.stat().st_ino] = path.name
        except OSError:
            continue
    return found


def processes(basetemp: str) -> Iterator[HostObject]:
    own, netns_by_inode = _own_tree(), _netns_inodes()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in own:
            continue
        try:
            raw = (proc / "cmdline").read_bytes()
            netns = netns_by_inode.get((proc / "ns" / "net").stat().st_ino, "")
        except OSError:  # gone, or a kernel thread
            continue
        argv = raw.decode(errors="replace").rstrip("\0").split("\0") if raw else []
        if argv and is_project_process(argv, basetemp, bool(netns)):
            where = f" (in netns {netns})" if netns else ""
            yield HostObject("process", proc.name, " ".join(argv), where)


# -- network, nftables, libvirt, files ------------------------------------------------------
def _entries(directory: Path, pattern: str) -> list[Path]:
    try:
        return sorted(directory.glob(pattern))
    except OSError:
        return []


def links() -> Iterator[HostObject]:
    for path in _entries(Path("/sys/class/net"), PREFIX + "*"):
        yield HostObject("link", path.name)


def namespaces() -> Iterator[HostObject]:
    for path in _entries(NETNS_DIR, PREFIX + "*"):
        yield HostObject("netns", path.name)


def _run(argv: list[str]) -> str | None:
    """The command's output, or None if it is missing or fails."""
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    return done.stdout if done.returncode == 0 else None


def _nft_items(args: list[str]) -> list[dict]:
    out = _run(["nft", "-j", *args])
    return json.loads(out).get("nftables", []) if out else []


def nft_objects() -> Iterator[HostObject]:
    for item in _nft_items(["list", "tables"]):
        table = item.get("table")
        if table and table["name"].startswith(PREFIX):
            yield HostObject("nft table", f"{table['family']} {table['name']}")
    for family, name in SHARED_NFT_TABLES:
        for item in _nft_items(["list", "table", family, name]):
            rule = item.get("rule")
            if rule:
                text = rule.get("comment") or json.dumps(rule["expr"], sort_keys=True)
                yield HostObject("nft rule", f"{family} {name} {rule['chain']}", text)


def domains() -> Iterator[HostObject]:
    out = _run(["virsh", "-q", "-c", LIBVIRT_URI, "list", "--all", "--name"])
    for name in (out or "").split():
        if name.startswith(PREFIX + "-"):
            yield HostObject("domain", name)


def files() -> Iterator[HostObject]:
    """Each ``zsl*`` entry of the temp dirs, and the files under those and the fixed roots
    (not directories: they count by what is in them, and the product keeps e.g.
    ``/run/zstack-lite/vr`` for its sockets)."""
    tmp = [path for directory in TMP_DIRS for path in _entries(directory, PREFIX + "*")]
    for path in tmp:
        yield HostObject("path", str(path))
    for root in [*FILE_ROOTS, *tmp]:
        for top, _dirs, filenames in os.walk(root):  # errors (a dir removed meanwhile) skipped
            for name in filenames:
                yield HostObject("path", os.path.join(top, name))


def snapshot(basetemp: str) -> set[HostObject]:
    """Every host object of the project, now."""
    found: set[HostObject] = set()
    for source in (processes(basetemp), links(), namespaces(), nft_objects(), domains(), files()):
        found.update(source)
    return found


# -- the session check ------------------------------------------------------------------------
@dataclass
class Diff:
    leaked: list[HostObject]
    vanished: list[HostObject]


def settle(before: set[HostObject], basetemp: str, seconds: float) -> Diff:
    """Compare with ``before``; while something is new, look again for up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        after = snapshot(basetemp)
        leaked = after - before
        if not leaked or time.monotonic() > deadline:
            return Diff(sorted(leaked), sorted(before - after))
        time.sleep(0.5)


def report(diff: Diff, basetemp: str) -> Iterable[tuple[str, bool]]:
    """Lines for the terminal summary, each with whether it is an error."""
    if diff.leaked:
        count = len(diff.leaked)
        yield f"{count} project host object(s) left behind by this session (the run fails):", True
        yield f"(this session's basetemp: {basetemp or 'unknown'})", True
        for obj in diff.leaked:
            mine = obj.kind == "process" and bool(basetemp) and mentions(obj.detail, basetemp)
            yield f"  LEAKED {obj}" + ("  [names this session's basetemp]" if mine else ""), True
    for obj in diff.vanished:
        yield f"  gone (was there before the session) {obj}", False


BEFORE = pytest.StashKey[set[HostObject]]()
BASETEMP = pytest.StashKey[str]()
DIFF = pytest.StashKey[Diff]()


def _basetemp(config: pytest.Config) -> str:
    factory = getattr(config, "_tmp_path_factory", None)
    return str(factory.getbasetemp()) if factory is not None else ""


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(SETTLE_INI, "seconds leaked host objects get to go away", default="10")


def pytest_sessionstart(session: pytest.Session) -> None:
    basetemp = session.config.stash[BASETEMP] = _basetemp(session.config)
    session.config.stash[BEFORE] = snapshot(basetemp)


def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    if BEFORE not in config.stash:
        return
    diff = config.stash[DIFF] = settle(
        config.stash[BEFORE], config.stash[BASETEMP], float(config.getini(SETTLE_INI))
    )
    if diff.leaked and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    config = terminalreporter.config
    diff = config.stash.get(DIFF, None)
    if diff is None or not (diff.leaked or diff.vanished):
        return
    terminalreporter.write_sep("=", "host leaks", red=bool(diff.leaked))
    for line, error in report(diff, config.stash[BASETEMP]):
        terminalreporter.write_line(line, red=error)
