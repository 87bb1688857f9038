"""What of a lab is on this host: the one way of finding a lab's objects by its identity.

A lab is a node data dir; its identity (:func:`agent.lab.lab_id`) is a hash of the dir's
path.  An object is the lab's when it says so, never because its name has the project's
prefix:

* a process of the project (an agent, a router agent, dnsmasq, the node) whose command
  line or an open file names a path under the data dir; any process in one of the lab's
  router namespaces;
* a libvirt domain ``zsl-*`` whose definition names a path under the data dir (its disks,
  its console log);
* host NAT rules whose comment names the lab (agent.network.host_nat);
* nftables tables the lab owns alone, named ``zsl…_<lab id>``
  (contracts.names.lab_table_name: e.g. the security groups' ``bridge zsl_sg_<lab>``);
* links whose ifalias names the lab (bridges, routers' veth host ends), and the router
  namespaces those veths lead to (the veth name carries the appliance's short id);
* VM taps (``zsl…`` tun devices, made by libvirt without an alias) enslaved to one of the
  lab's bridges, or whose ifalias names the lab;
* routers whose directory is under the data dir, whose dnsmasq run dir names it
  (``<run dir>/data-dir``) or whose agent's command line does;
* files under the lab's primary storage directories (which lie under the data dir): VM
  volume directories, image caches, console logs.

:class:`LabFinder` finds (blocking; root): the reset's sweep (agent.lab_cleanup) removes
everything it finds; :func:`inventory` lists it as :class:`HostObject` s for the
reconciler (contracts.kvm.LAB_INVENTORY), and :func:`remove_objects` removes the ones the
node names, refusing any that is not the lab's now (contracts.kvm.LAB_REMOVE).  The node
decides what is an orphan: the agent knows nothing of the database.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import libvirt
from pyroute2 import IPRoute

from agent.backend import vm_uuid_of
from agent.libvirt_backend import remove_domain
from agent.network import bridges, host_nat, links
from agent.network.appliance import NETNS_DIR, namespace_pids, remove_namespace
from agent.network.processes import SHORT_SOCKET_DIR, ProcessTable, terminate
from agentkit.errors import AgentError
from agentkit.nft import nft
from agentkit.procs import cmdline
from contracts.kvm import DOMAIN_PREFIX, LAB_OBJECT_KINDS, HostObjectTO
from contracts.names import (
    DNSMASQ_RUN_DIR,
    NAMESPACE_PREFIX,
    PREFIX,
    VETH_PREFIX,
    lab_id,
    lab_of_alias,
    lab_of_table,
    short_id,
)

log = logging.getLogger(__name__)

LIBVIRT_LOG_DIR: Final = Path("/var/log/libvirt/qemu")
PROGRAMS: Final = ("agent.main", "virtual_router.main", "core.daemon", "zstack-lite", "dnsmasq")
"""A process is the project's when one of its first three arguments ends with one of these
(``python -m agent.main``, ``/usr/sbin/dnsmasq``, ``.venv/bin/zstack-lite``)."""
NODE_PROGRAMS: Final = ("core.daemon", "zstack-lite")
SHORT_ID_LENGTH: Final = 9
APPLIANCES: Final = "appliances"
APPLIANCE_DIRS: Final = ("agent/appliances/*", "simulators/*/appliances/*")
"""Routers' directories: the local KVM agent's (``<data dir>/agent``) and simulators'."""

# -- the reconciler's view ---------------------------------------------------------------
DOMAIN: Final = "domain"
PROCESS: Final = "process"
NAMESPACE: Final = "namespace"
VETH: Final = "veth"
TAP: Final = "tap"
HOST_NAT: Final = "hostNat"
NFT_TABLE: Final = "nftTable"
BRIDGE: Final = "bridge"
FILE: Final = "file"
KINDS: Final = LAB_OBJECT_KINDS
"""Every kind, in the order removals go."""
STORAGE_DIRS: Final = {
    "rootvolumes": "volumes",
    "datavolumes": "data volume",
    "imagecache": "image cache",
    "consoles": "log",
}
"""Subdirectories of a primary storage the core writes (core.vm.create_flows; a data
volume's files are in ``datavolumes/vol-<volume uuid>``, whose ref is the volume uuid)."""


@dataclass(frozen=True)
class HostObject:
    """One object of the lab on the host.  ``ref`` is what the node compares with its
    database: a domain's VM uuid, a namespace's or veth's router short id, a process's
    router uuid (router agents, dnsmasq) or agent directory (``agent``,
    ``simulators/<host uuid>``), a tap's, bridge's or host NAT entry's bridge name, a
    file's VM or image uuid ("" when nothing names an owner)."""

    kind: str
    name: str
    ref: str = ""
    detail: str = ""

    def to_contract(self) -> HostObjectTO:
        return HostObjectTO(kind=self.kind, name=self.name, ref=self.ref, detail=self.detail)


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
    or hold a file under it open (a node whose data dir was deleted holds its lock); never
    this process nor its ancestors."""
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


def _run_dir_appliances(argv: Iterable[str]) -> set[str]:
    """The routers whose dnsmasq run dir (``<DNSMASQ_RUN_DIR>/<uuid>-<8 hex>``) an argument
    names: a router's dnsmasq names its run dir, not always its directory."""
    found = set()
    for arg in argv:
        for value in (arg, arg.partition("=")[2]):
            if is_under(value, DNSMASQ_RUN_DIR) and value != str(DNSMASQ_RUN_DIR):
                name = Path(value).relative_to(DNSMASQ_RUN_DIR).parts[0]
                found.add(name.rpartition("-")[0])
    return found


def _agent_dir(argv: list[str], data_dir: Path) -> str:
    """A host agent's directory relative to the lab's data dir (``agent``,
    ``simulators/<host uuid>``), from its ``--data-dir``; "" if it names none."""
    for i, arg in enumerate(argv):
        value = argv[i + 1] if arg == "--data-dir" and i + 1 < len(argv) else ""
        if arg.startswith("--data-dir="):
            value = arg.partition("=")[2]
        if value and is_under(value, data_dir) and value.rstrip("/") != str(data_dir):
            return str(Path(value).relative_to(data_dir))
    return ""


def describe_process(pid: int, argv: list[str]) -> str:
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


# -- finding -------------------------------------------------------------------------------
@dataclass
class Routers:
    """What is known of the lab's routers: their uuids and short ids."""

    appliances: set[str] = field(default_factory=set)
    short_ids: set[str] = field(default_factory=set)


class LabFinder:
    """Finds the objects of the lab whose node data dir is ``data_dir`` (blocking).

    ``lab``: its identity, by default the one the dir implies.  :attr:`routers` gathers
    the routers' ids met on the way (a router's agent and its dnsmasq name its directory,
    its veths its short id), for what they leave outside their namespace."""

    def __init__(self, data_dir: Path, lab: str | None = None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.lab = lab or lab_id(self.data_dir)
        self.routers = Routers()

    def processes(self, programs: Sequence[str] = PROGRAMS) -> dict[int, list[str]]:
        found = {
            p: a for p, a in lab_processes(self.data_dir).items() if is_project_program(a, programs)
        }
        for argv in found.values():
            self.routers.appliances.update(appliances_named(argv, self.data_dir))
        return found

    def domains(self, conn: libvirt.virConnect) -> list[libvirt.virDomain]:
        found = []
        for dom in conn.listAllDomains(0):
            if not dom.name().startswith(DOMAIN_PREFIX):
                continue
            try:
                if domain_names_path_under(dom.XMLDesc(0), self.data_dir):
                    found.append(dom)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:  # gone meanwhile
                    raise
        return found

    def links(self, ipr: IPRoute) -> list[Any]:
        """Links whose ifalias names the lab (bridges, routers' veths)."""
        return [link for link in ipr.link("dump") if lab_of_alias(links.alias_of(link)) == self.lab]

    def taps(self, ipr: IPRoute) -> list[tuple[str, str]]:
        """``(tap, its bridge or "")`` of the lab's VM taps: ``zsl…`` tun devices enslaved
        to one of the lab's bridges or whose ifalias names the lab."""
        all_links = list(ipr.link("dump"))
        lab_bridges = {
            int(link["index"]): links.name_of(link)
            for link in all_links
            if links.kind_of(link) == "bridge" and lab_of_alias(links.alias_of(link)) == self.lab
        }
        found = []
        for link in all_links:
            name = links.name_of(link)
            if not name.startswith(PREFIX) or links.kind_of(link) != "tun":
                continue
            master = lab_bridges.get(links.master_of(link), "")
            if master or lab_of_alias(links.alias_of(link)) == self.lab:
                found.append((name, master))
        return found

    def dnsmasq_run_dirs(self) -> list[Path]:
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

    def namespaces(self) -> list[str]:
        """The lab's router namespaces that exist, noting the routers' ids on the way."""
        with IPRoute() as ipr:
            for link in self.links(ipr):
                name = links.name_of(link)
                if name.startswith(VETH_PREFIX):
                    self.routers.short_ids.add(name[len(VETH_PREFIX) :][:SHORT_ID_LENGTH])
        for pattern in APPLIANCE_DIRS:
            self.routers.appliances.update(
                p.name for p in self.data_dir.glob(pattern) if p.is_dir()
            )
        for run_dir in self.dnsmasq_run_dirs():
            self.routers.appliances.add(run_dir.name.rpartition("-")[0])
        self.routers.short_ids.update(short_id(u) for u in self.routers.appliances)
        found = []
        for ns in sorted(os.listdir(NETNS_DIR)) if NETNS_DIR.is_dir() else []:
            if not ns.startswith(NAMESPACE_PREFIX):
                continue
            if ns[len(NAMESPACE_PREFIX) :] in self.routers.short_ids or any(
                names_path_under(cmdline(pid), self.data_dir) for pid in namespace_pids(ns)
            ):
                self.routers.short_ids.add(ns[len(NAMESPACE_PREFIX) :])
                found.append(ns)
        return found

    def host_nat(self) -> list[host_nat.HostNatEntry]:
        return host_nat.read_entries(self.lab)

    def nft_tables(self) -> list[tuple[str, str]]:
        """``(family, name)`` of the nftables tables the lab owns alone."""
        listed = json.loads(nft(["-j", "list", "tables"]) or "{}").get("nftables", [])
        return sorted(
            (item["table"]["family"], item["table"]["name"])
            for item in listed
            if "table" in item and lab_of_table(item["table"]["name"]) == self.lab
        )

    def storage_roots(self, paths: Iterable[str]) -> list[Path]:
        """The primary storage directories given that are the lab's (under its data dir)."""
        return [Path(p) for p in paths if is_under(p, self.data_dir) and Path(p).is_dir()]

    def files(self, storage_paths: Iterable[str]) -> list[HostObject]:
        found = []
        for root in self.storage_roots(storage_paths):
            for sub, what in STORAGE_DIRS.items():
                directory = root / sub
                if not directory.is_dir():
                    continue
                for entry in sorted(directory.iterdir()):
                    found.append(HostObject(FILE, str(entry), _file_ref(sub, entry.name), what))
        return found


def _file_ref(sub: str, name: str) -> str:
    if sub == "rootvolumes":
        return name.removeprefix("vm-")
    if sub == "datavolumes":
        return name.removeprefix("vol-")
    return name.split(".", 1)[0]  # <image uuid>.<format>, <vm uuid>.log[.N]


# -- the inventory ---------------------------------------------------------------------------
def _program(argv: list[str]) -> str:
    for name, program in (
        ("agent.main", "agent"),
        ("virtual_router.main", "router"),
        ("dnsmasq", "dnsmasq"),
    ):
        if is_project_program(argv, (name,)):
            return program
    return ""


def inventory(
    finder: LabFinder, conn: libvirt.virConnect | None, storage_paths: Iterable[str] = ()
) -> list[HostObject]:
    """Every object of the lab on this host (see the module's doc), but the node's own
    processes and this agent and its ancestors."""
    objects: list[HostObject] = []
    if conn is not None:
        for dom in finder.domains(conn):
            objects.append(HostObject(DOMAIN, dom.name(), vm_uuid_of(dom.name()) or ""))
    programs = tuple(p for p in PROGRAMS if p not in NODE_PROGRAMS)
    for pid, argv in sorted(finder.processes(programs).items()):
        program = _program(argv)
        if program == "agent":
            ref = _agent_dir(argv, finder.data_dir)
        else:
            named = appliances_named(argv, finder.data_dir) | _run_dir_appliances(argv)
            ref = next(iter(named)) if len(named) == 1 else ""
        objects.append(HostObject(PROCESS, str(pid), ref, f"{program}: {' '.join(argv)[:200]}"))
    for ns in finder.namespaces():
        objects.append(HostObject(NAMESPACE, ns, ns[len(NAMESPACE_PREFIX) :]))
    with IPRoute() as ipr:
        for link in finder.links(ipr):
            name, kind = links.name_of(link), links.kind_of(link)
            if kind == "bridge":
                objects.append(HostObject(BRIDGE, name, name))
            elif name.startswith(VETH_PREFIX):
                objects.append(HostObject(VETH, name, name[len(VETH_PREFIX) :][:SHORT_ID_LENGTH]))
        for tap, master in finder.taps(ipr):
            objects.append(HostObject(TAP, tap, tap, master))
    for entry in finder.host_nat():
        gateway = entry.gateway.with_prefixlen
        objects.append(HostObject(HOST_NAT, f"{entry.bridge_name} {gateway}", entry.bridge_name))
    for family, table in finder.nft_tables():
        objects.append(HostObject(NFT_TABLE, f"{family} {table}"))
    objects.extend(finder.files(storage_paths))
    return objects


# -- removing what the node names -------------------------------------------------------------
@dataclass
class Removal:
    removed: list[HostObject] = field(default_factory=list)
    refused: list[tuple[HostObject, str]] = field(default_factory=list)
    failures: list[tuple[HostObject, str]] = field(default_factory=list)


def remove_objects(
    finder: LabFinder,
    conn: libvirt.virConnect | None,
    wanted: Sequence[tuple[str, str]],
    storage_paths: Iterable[str] = (),
) -> Removal:
    """Remove the objects named ``(kind, name)`` that are the lab's now (found anew, so an
    object of another lab, or one that is gone, is refused), in :data:`KINDS` order."""
    storage_paths = list(storage_paths)
    present = {(o.kind, o.name): o for o in inventory(finder, conn, storage_paths)}
    result = Removal()
    order = {kind: i for i, kind in enumerate(KINDS)}
    for kind, name in sorted(set(wanted), key=lambda w: (order.get(w[0], len(KINDS)), w[1])):
        obj = present.get((kind, name))
        if obj is None:
            result.refused.append(
                (HostObject(kind, name), f"no {kind} {name} of lab {finder.lab} on this host")
            )
            continue
        try:
            _remove(finder, conn, obj)
        except Exception as exc:
            result.failures.append((obj, links.message(exc)))
            continue
        log.info("removed the orphan %s %s (lab %s)", kind, name, finder.lab)
        result.removed.append(obj)
    return result


def _remove(finder: LabFinder, conn: libvirt.virConnect | None, obj: HostObject) -> None:
    kind, name = obj.kind, obj.name
    if kind == DOMAIN:
        assert conn is not None
        remove_domain(conn.lookupByName(name))
        remove_path(LIBVIRT_LOG_DIR / f"{name}.log")
    elif kind == PROCESS:
        terminate([int(name)], ProcessTable())
    elif kind == NAMESPACE:
        remove_router(finder, name[len(NAMESPACE_PREFIX) :])
    elif kind in (VETH, TAP):
        with IPRoute() as ipr:
            link = links.find(ipr, name)
            if link is not None:
                links.delete_link(ipr, int(link["index"]))
    elif kind == BRIDGE:
        bridges.delete_bridge(name)
    elif kind == HOST_NAT:
        bridge, _, gateway = name.partition(" ")
        host_nat.remove_entry(finder.lab, bridge, ipaddress.IPv4Interface(gateway))
    elif kind == NFT_TABLE:
        remove_table(*name.split(" ", 1))
    elif kind == FILE:
        remove_path(Path(name))
    else:
        raise AgentError(f"unknown kind of host object {kind!r}")


def remove_table(family: str, table: str) -> None:
    """An nftables table, if it is there (one transaction: declare, then delete)."""
    nft(["-f", "-"], f"table {family} {table} {{}}\ndelete table {family} {table}\n")


def remove_router(finder: LabFinder, short: str) -> None:
    """A router of the lab whose short id is ``short``: the processes in its namespace, its
    veths, the namespace, its directories and socket (an appliance destroy's work, for a
    router the node no longer knows)."""
    ns = NAMESPACE_PREFIX + short
    terminate(namespace_pids(ns), ProcessTable())
    with IPRoute() as ipr:
        for link in finder.links(ipr):
            if links.name_of(link).startswith(VETH_PREFIX + short):
                links.delete_link(ipr, int(link["index"]))
    remove_namespace(ns)
    for pattern in APPLIANCE_DIRS:
        for directory in finder.data_dir.glob(pattern):
            if short_id(directory.name) == short:
                remove_path(directory)
    for run_dir in finder.dnsmasq_run_dirs():
        if short_id(run_dir.name.rpartition("-")[0]) == short:
            remove_path(run_dir)
    if SHORT_SOCKET_DIR.is_dir():
        for sock in SHORT_SOCKET_DIR.glob("*.sock"):
            uuid = sock.name.removesuffix(".sock")
            if uuid in finder.routers.appliances and short_id(uuid) == short:
                remove_path(sock)


def remove_path(path: Path) -> bool:
    """Remove a file or a directory tree; False if there was none."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    return True
