"""What a lab left on this host, found by its identity and removed: the sweep of a reset
(blocking; root).

A lab is a node data dir; its identity (:func:`agent.lab.lab_id`) is a hash of the dir's
path, so the sweep works from the path alone, after the dir was deleted by hand too.  An
object is the lab's when it says so, never because its name has the project's prefix:

* a process of the project (an agent, a router agent, dnsmasq, the node) whose command
  line or an open file names a path under the data dir; any process in one of the lab's
  router namespaces;
* a libvirt domain ``zsl-*`` whose definition names a path under the data dir (its disks,
  its console log);
* host NAT rules whose comment names the lab (:func:`agent.network.host_nat.remove_lab`);
* links whose ifalias names the lab (bridges, routers' veth host ends), and the router
  namespaces those veths lead to (the veth name carries the appliance's short id);
* routers whose directory is under the data dir, whose dnsmasq run dir names it
  (``<run dir>/data-dir``) or whose agent's command line does: their namespace, their
  dnsmasq run dir and their socket under /run/zstack-lite/vr;
* libvirt's log of each of the lab's domains (/var/log/libvirt/qemu/<name>.log).

Order: the node first (it would restart its agents), then domains (QEMU holds the disks),
the other processes, routers, host NAT, links, files.  A step that fails is reported and
the sweep goes on.  The data dir itself is the caller's to remove.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import libvirt
from pyroute2 import IPRoute

from agent.backend import domain_name
from agent.lab import lab_id
from agent.libvirt_backend import DEFAULT_URI as LIBVIRT_URI
from agent.libvirt_backend import remove_domain
from agent.network import bridges, host_nat, links
from agent.network.appliance import NETNS_DIR, namespace_pids, remove_namespace
from agent.network.names import (
    DNSMASQ_RUN_DIR,
    NAMESPACE_PREFIX,
    VETH_PREFIX,
    lab_of_alias,
    short_id,
)
from agent.network.processes import SHORT_SOCKET_DIR, ProcessTable, cmdline, terminate
from agent.protocol import DOMAIN_PREFIX

LIBVIRT_LOG_DIR: Final = Path("/var/log/libvirt/qemu")
PROGRAMS: Final = ("agent.main", "virtual_router.main", "core.daemon", "zstack-lite", "dnsmasq")
"""A process is the project's when one of its first three arguments ends with one of these
(``python -m agent.main``, ``/usr/sbin/dnsmasq``, ``.venv/bin/zstack-lite``)."""
NODE_PROGRAMS: Final = ("core.daemon", "zstack-lite")
SHORT_ID_LENGTH: Final = 9
APPLIANCES: Final = "appliances"
APPLIANCE_DIRS: Final = ("agent/appliances/*", "simulators/*/appliances/*")
"""Routers' directories: the local KVM agent's (``<data dir>/agent``) and simulators'."""

Report = Callable[[str], None]


@dataclass
class Swept:
    """What the sweep removed (one line per object) and what it could not."""

    removed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def is_under(text: str, root: Path) -> bool:
    """Whether ``text`` is the path ``root`` or a path inside it (a deleted file's
    `` (deleted)`` suffix, as /proc shows it, is ignored)."""
    text = text.removesuffix(" (deleted)")
    base = str(root).rstrip("/")
    return text == base or text.startswith(base + "/")


def names_path_under(argv: Iterable[str], root: Path) -> bool:
    """Whether an argument (or the value of an ``--option=value`` one) is under ``root``."""
    return any(is_under(arg, root) or is_under(arg.partition("=")[2], root) for arg in argv if arg)


# -- processes ----------------------------------------------------------------------------
def is_project_program(argv: list[str], programs: Iterable[str] = PROGRAMS) -> bool:
    return any(arg.endswith(p) for arg in argv[:3] for p in programs)


def open_files(pid: int) -> list[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return []
    found = []
    for fd in fds:
        with contextlib.suppress(OSError):
            found.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return found


def _ancestors() -> set[int]:
    """This process and its ancestors (never to be ended)."""
    pids, pid = set(), os.getpid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def lab_processes(data_dir: Path) -> dict[int, list[str]]:
    """The project's processes that name a path under ``data_dir`` on their command line
    or hold a file under it open (a node whose data dir was deleted holds its lock)."""
    spared = _ancestors()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in spared:
            continue
        pid = int(entry)
        argv = cmdline(pid)
        if not argv or not is_project_program(argv):
            continue
        if names_path_under(argv, data_dir) or any(is_under(f, data_dir) for f in open_files(pid)):
            found[pid] = argv
    return found


def appliances_named(argv: Iterable[str], data_dir: Path) -> set[str]:
    """The routers (their directory names: uuids) whose directory under ``data_dir``
    (``.../appliances/<uuid>``) an argument names."""
    found = set()
    for arg in argv:
        for value in (arg, arg.partition("=")[2]):
            if not is_under(value, data_dir):
                continue
            parts = Path(value).relative_to(data_dir).parts
            for i, part in enumerate(parts[:-1]):
                if part == APPLIANCES:
                    found.add(parts[i + 1])
    return found


def _describe(pid: int, argv: list[str]) -> str:
    text = " ".join(argv)
    return f"process {pid} ({text[:120]}{'...' if len(text) > 120 else ''})"


# -- libvirt --------------------------------------------------------------------------------
def domain_names_path_under(xml: str, root: Path) -> bool:
    """Whether a domain definition names a file under ``root`` (any attribute or text)."""
    try:
        tree = ET.fromstring(xml)
    except ET.ParseError:
        return False
    for element in tree.iter():
        values = [*element.attrib.values(), (element.text or "").strip()]
        if any(is_under(v, root) for v in values if v.startswith("/")):
            return True
    return False


# -- the sweep ------------------------------------------------------------------------------
class LabSweep:
    def __init__(self, data_dir: Path, report: Report = print) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.lab = lab_id(self.data_dir)
        self.report = report
        self.swept = Swept()
        self.processes = ProcessTable()
        self.domains: set[str] = set()
        """Names of the lab's domains (found now or given), whose libvirt logs go."""
        self.appliances: set[str] = set()
        """Full uuids of the lab's routers."""
        self.short_ids: set[str] = set()
        """Short ids (9 hex) of the lab's routers (from their veths and namespaces)."""

    def removed(self, what: str) -> None:
        self.swept.removed.append(what)
        self.report(f"removed {what}")

    def failed(self, what: str, exc: BaseException) -> None:
        text = f"{what}: {links.message(exc)}"
        self.swept.failures.append(text)
        self.report(f"could not remove {text}")

    def run(self, vm_uuids: Iterable[str] = ()) -> Swept:
        self.domains.update(domain_name(u) for u in vm_uuids)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("the lab's node", self.end_nodes),
            ("the lab's libvirt domains", self.remove_domains),
            ("the lab's processes", self.end_processes),
            ("the lab's routers", self.remove_routers),
            ("the lab's host NAT rules", self.remove_host_nat),
            ("the lab's links", self.remove_links),
            ("the lab's files outside its data dir", self.remove_files),
        ]
        for what, step in steps:
            try:
                step()
            except Exception as exc:
                self.failed(what, exc)
        return self.swept

    # -- processes ------------------------------------------------------------------
    def _end(self, found: dict[int, list[str]]) -> None:
        if not found:
            return
        try:
            terminate(list(found), self.processes)
        except Exception as exc:
            self.failed(", ".join(_describe(p, a) for p, a in found.items()), exc)
            return
        for pid, argv in found.items():
            self.removed(_describe(pid, argv))

    def _lab_processes(self) -> dict[int, list[str]]:
        """The lab's processes now; the routers they name are noted (a router's agent and
        its dnsmasq name its directory), for the files they may leave when they end."""
        found = lab_processes(self.data_dir)
        for argv in found.values():
            self.appliances.update(appliances_named(argv, self.data_dir))
        return found

    def end_nodes(self) -> None:
        found = self._lab_processes()
        self._end({p: a for p, a in found.items() if is_project_program(a, NODE_PROGRAMS)})

    def end_processes(self) -> None:
        self._end(self._lab_processes())

    # -- domains --------------------------------------------------------------------
    def remove_domains(self) -> None:
        try:
            conn = libvirt.open(LIBVIRT_URI)
        except libvirt.libvirtError as exc:
            self.failed(f"libvirt domains ({LIBVIRT_URI} does not answer)", exc)
            return
        try:
            for dom in conn.listAllDomains(0):
                name = dom.name()
                if not name.startswith(DOMAIN_PREFIX):
                    continue
                try:
                    if not domain_names_path_under(dom.XMLDesc(0), self.data_dir):
                        continue
                    remove_domain(dom)
                except Exception as exc:
                    if isinstance(exc, libvirt.libvirtError) and (
                        exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN
                    ):
                        continue  # gone meanwhile
                    self.failed(f"libvirt domain {name}", exc)
                    continue
                self.domains.add(name)
                self.removed(f"libvirt domain {name}")
        finally:
            conn.close()

    # -- routers --------------------------------------------------------------------
    def _find_routers(self) -> list[str]:
        """The lab's router namespaces that exist, noting the routers' ids on the way."""
        with IPRoute() as ipr:
            for link in ipr.link("dump"):
                name = links.name_of(link)
                if name.startswith(VETH_PREFIX) and lab_of_alias(links.alias_of(link)) == self.lab:
                    self.short_ids.add(name[len(VETH_PREFIX) :][:SHORT_ID_LENGTH])
        for pattern in APPLIANCE_DIRS:
            self.appliances.update(p.name for p in self.data_dir.glob(pattern) if p.is_dir())
        for run_dir in self._dnsmasq_run_dirs():
            self.appliances.add(run_dir.name.rpartition("-")[0])
        self.short_ids.update(short_id(u) for u in self.appliances)
        namespaces = []
        for ns in sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []:
            if not ns.startswith(NAMESPACE_PREFIX):
                continue
            if ns[len(NAMESPACE_PREFIX) :] in self.short_ids or any(
                names_path_under(cmdline(pid), self.data_dir) for pid in namespace_pids(ns)
            ):
                self.short_ids.add(ns[len(NAMESPACE_PREFIX) :])
                namespaces.append(ns)
        return namespaces

    def remove_routers(self) -> None:
        for ns in self._find_routers():
            try:
                pids = namespace_pids(ns)
                terminate(pids, self.processes)
                for pid in pids:
                    self.removed(f"process {pid} in namespace {ns}")
                remove_namespace(ns)
            except Exception as exc:
                self.failed(f"namespace {ns}", exc)
                continue
            self.removed(f"namespace {ns}")

    # -- host NAT and links -----------------------------------------------------------
    def remove_host_nat(self) -> None:
        for entry in host_nat.remove_lab(self.lab):
            self.removed(f"host NAT of {entry.gateway} on {entry.bridge_name} (nft and address)")

    def remove_links(self) -> None:
        with IPRoute() as ipr:
            mine = [
                (links.name_of(link), links.kind_of(link), int(link["index"]))
                for link in ipr.link("dump")
                if lab_of_alias(links.alias_of(link)) == self.lab
            ]
            for name, kind, index in sorted(mine, key=lambda m: m[1] == "bridge"):
                try:
                    if kind == "bridge":
                        bridges.delete_bridge(name)
                    else:
                        links.delete_link(ipr, index)
                except Exception as exc:
                    self.failed(f"{kind or 'link'} {name}", exc)
                    continue
                self.removed(f"{kind or 'link'} {name}")

    # -- files ------------------------------------------------------------------------
    def _dnsmasq_run_dirs(self) -> list[Path]:
        """Run dirs of the lab's routers' dnsmasq: their ``data-dir`` file names a path
        under the data dir."""
        if not DNSMASQ_RUN_DIR.is_dir():
            return []
        found = []
        for run_dir in sorted(DNSMASQ_RUN_DIR.iterdir()):
            with contextlib.suppress(OSError):
                if is_under((run_dir / "data-dir").read_text().strip(), self.data_dir):
                    found.append(run_dir)
        return found

    def remove_files(self) -> None:
        for run_dir in self._dnsmasq_run_dirs():
            self._remove(run_dir)
        if SHORT_SOCKET_DIR.is_dir():
            for sock in sorted(SHORT_SOCKET_DIR.iterdir()):
                uuid = sock.name.removesuffix(".sock")
                if sock.name.endswith(".sock") and (
                    uuid in self.appliances or short_id(uuid) in self.short_ids
                ):
                    self._remove(sock)
        for name in sorted(self.domains):
            log = LIBVIRT_LOG_DIR / f"{name}.log"
            if log.exists():
                self._remove(log)

    def _remove(self, path: Path) -> None:
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            self.failed(str(path), exc)
            return
        self.removed(str(path))


def sweep(data_dir: Path, vm_uuids: Iterable[str] = (), report: Report = print) -> Swept:
    """Remove what the lab of ``data_dir`` left on this host (see the module's doc);
    ``vm_uuids``: the lab's VMs known from its database (their libvirt logs go too)."""
    return LabSweep(data_dir, report).run(vm_uuids)
