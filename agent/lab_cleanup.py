"""What a lab left on this host, found by its identity and removed: the sweep of a reset
(blocking; root).

A lab is a node data dir; its identity (:func:`agent.lab.lab_id`) is a hash of the dir's
path, so the sweep works from the path alone, after the dir was deleted by hand too.  What
is the lab's is found as agent.lab_inventory's :class:`LabFinder` finds it (the
reconciler's one way too); the sweep removes all of it: processes, domains, router
namespaces with their dnsmasq run dir and their socket under /run/zstack-lite/vr, host
NAT rules, the nftables tables the lab owns alone (``zsl…_<lab id>``), links whose ifalias
names the lab, and libvirt's log of each of the lab's
domains (/var/log/libvirt/qemu/<name>.log).

Order: the node first (it would restart its agents), then domains (QEMU holds the disks),
the other processes, routers, host NAT, the lab's tables, links, files.  A step that fails
is reported and the sweep goes on.  The data dir itself is the caller's to remove.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import libvirt
from pyroute2 import IPRoute

from agent.backend import domain_name
from agent.lab_inventory import (
    LIBVIRT_LOG_DIR,
    NODE_PROGRAMS,
    PROGRAMS,
    LabFinder,
    appliances_named,
    describe_process,
    domain_names_path_under,
    is_project_program,
    is_under,
    names_path_under,
    remove_path,
    remove_table,
)
from agent.libvirt_backend import DEFAULT_URI as LIBVIRT_URI
from agent.libvirt_backend import remove_domain
from agent.network import bridges, host_nat, links
from agent.network.appliance import namespace_pids, remove_namespace
from agent.network.processes import SHORT_SOCKET_DIR, ProcessTable, terminate
from contracts.names import short_id

__all__ = [
    "LIBVIRT_LOG_DIR",
    "PROGRAMS",
    "LabSweep",
    "Swept",
    "appliances_named",
    "domain_names_path_under",
    "is_project_program",
    "is_under",
    "names_path_under",
    "sweep",
]

Report = Callable[[str], None]


@dataclass
class Swept:
    """What the sweep removed (one line per object) and what it could not."""

    removed: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


# -- the sweep ------------------------------------------------------------------------------
class LabSweep:
    def __init__(self, data_dir: Path, report: Report = print) -> None:
        self.find = LabFinder(data_dir)
        self.data_dir = self.find.data_dir
        self.lab = self.find.lab
        self.report = report
        self.swept = Swept()
        self.processes = ProcessTable()
        self.domains: set[str] = set()
        """Names of the lab's domains (found now or given), whose libvirt logs go."""

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
            ("the lab's nftables tables", self.remove_nft_tables),
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
            self.failed(", ".join(describe_process(p, a) for p, a in found.items()), exc)
            return
        for pid, argv in found.items():
            self.removed(describe_process(pid, argv))

    def end_nodes(self) -> None:
        self._end(self.find.processes(NODE_PROGRAMS))

    def end_processes(self) -> None:
        self._end(self.find.processes(PROGRAMS))

    # -- domains --------------------------------------------------------------------
    def remove_domains(self) -> None:
        try:
            conn = libvirt.open(LIBVIRT_URI)
        except libvirt.libvirtError as exc:
            self.failed(f"libvirt domains ({LIBVIRT_URI} does not answer)", exc)
            return
        try:
            for dom in self.find.domains(conn):
                name = dom.name()
                try:
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
    def remove_routers(self) -> None:
        for ns in self.find.namespaces():
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

    def remove_nft_tables(self) -> None:
        for family, table in self.find.nft_tables():
            try:
                remove_table(family, table)
            except Exception as exc:
                self.failed(f"nftables table {family} {table}", exc)
                continue
            self.removed(f"nftables table {family} {table}")

    def remove_links(self) -> None:
        with IPRoute() as ipr:
            mine = [
                (links.name_of(link), links.kind_of(link), int(link["index"]))
                for link in self.find.links(ipr)
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
    def remove_files(self) -> None:
        routers = self.find.routers
        for run_dir in self.find.dnsmasq_run_dirs():
            self._remove(run_dir)
        if SHORT_SOCKET_DIR.is_dir():
            for sock in sorted(SHORT_SOCKET_DIR.iterdir()):
                uuid = sock.name.removesuffix(".sock")
                if sock.name.endswith(".sock") and (
                    uuid in routers.appliances or short_id(uuid) in routers.short_ids
                ):
                    self._remove(sock)
        for name in sorted(self.domains):
            log = LIBVIRT_LOG_DIR / f"{name}.log"
            if log.exists():
                self._remove(log)

    def _remove(self, path: Path) -> None:
        try:
            if not remove_path(path):
                return
        except OSError as exc:
            self.failed(str(path), exc)
            return
        self.removed(str(path))


def sweep(data_dir: Path, vm_uuids: Iterable[str] = (), report: Report = print) -> Swept:
    """Remove what the lab of ``data_dir`` left on this host (see the module's doc);
    ``vm_uuids``: the lab's VMs known from its database (their libvirt logs go too)."""
    return LabSweep(data_dir, report).run(vm_uuids)
