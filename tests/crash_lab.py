"""A node-service lab for crash tests: the node runs as the real service, a call is made
with a fault in a chain (tests/faults.py, set through config.toml [chains]) that SIGKILLs
the node, the node is started again (it takes up what the crash interrupted before it
serves calls), and the database and the host are compared with how they were before.

What is compared (:meth:`CrashLab.state`): the VMs and their states, volumes, NICs,
used IPs, tags, routers, the flow journal, host and primary storage capacity (from the
database, read with sqlite3); the files under primary storage (volumes, console logs);
and on a kvm lab the libvirt domains, the links, namespaces, processes (QEMU, router
agents, dnsmasq) and host NAT rules of the lab, and the project's run files.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

from agent.network.base import APPLIANCES_DIR
from agent.network.processes import SHORT_SOCKET_DIR
from contracts.names import DNSMASQ_RUN_DIR, dnsmasq_run_dir, lab_id, lab_of_alias
from core.kernel.data_dir import LOG_NAME
from core.vm import state as vm_states
from tests import faults, host_leaks
from tests.service_lab import ServiceLab, service_lab

REPO = Path(__file__).resolve().parents[1]


class CrashLab:
    def __init__(self, directory: Path, body: str, kvm: bool) -> None:
        self.body = body
        self.kvm = kvm
        self.lab: ServiceLab = service_lab(directory, body)
        # The node process imports the fault flows from this repository's tests package.
        self.lab.env["PYTHONPATH"] = str(REPO)

    # -- driving ------------------------------------------------------------------------

    def configure(self, chains: dict[str, list[str]] | None = None) -> None:
        """The lab's config with these chain lists (none: the declared defaults)."""
        text = self.body
        if chains:
            text += "[chains]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in chains.items())
        self.lab.config.write_text(f'[core]\ndata_dir = "data"\n{text}')

    def start(self) -> None:
        res = self.lab.service("start")
        if res.rc != 0:
            raise AssertionError(f"the node did not start: {res.out}{res.err}\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        """The end of the node's log (shown when a case fails)."""
        log = self.lab.data_dir / LOG_NAME
        found = log.read_text().splitlines() if log.exists() else ["(no log)"]
        return "\n".join([ln for ln in found if "alembic" not in ln][-lines:])

    def ok(self, *args: str) -> Any:
        return self.lab.ok(*args)

    def crash(self, chains: dict[str, list[str]], *call: str) -> None:
        """Restart the node with ``chains``, make the call, see the node die."""
        if self.lab.node_pid is not None:
            res = self.lab.service("stop")
            assert res.rc == 0, res.err
        self.configure(chains)
        (self.lab.data_dir / faults.MARKER).unlink(missing_ok=True)  # armed again
        self.start()
        res = self.lab.zcli("--no-start", *call)
        assert res.rc != 0, f"zcli {' '.join(call)} succeeded: the fault did not fire"
        deadline = time.monotonic() + 60
        while self.lab.node_pid is not None:
            assert time.monotonic() < deadline, "the node outlived its fault"
            time.sleep(0.05)

    def recover(self) -> None:
        """Start the node on the default chains: it takes up the interrupted run."""
        self.configure()
        self.start()

    # -- what is compared ---------------------------------------------------------------

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        db = sqlite3.connect(f"file:{self.lab.data_dir / 'zstack.db'}?mode=ro", uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def state(self) -> dict[str, Any]:
        vms = self.rows("SELECT uuid, state, host_uuid FROM vm_instance ORDER BY uuid")
        storages = [Path(url) for (url,) in self.rows("SELECT url FROM primary_storage")]
        found: dict[str, Any] = {
            "vms": vms,
            "volumes": self.rows("SELECT uuid, status FROM volume ORDER BY uuid"),
            "nics": self.rows("SELECT uuid, ip FROM vm_nic ORDER BY uuid"),
            "usedIps": self.rows("SELECT ip FROM used_ip ORDER BY ip"),
            "tags": self.rows("SELECT uuid FROM system_tag UNION ALL SELECT uuid FROM user_tag"),
            "routers": self.rows("SELECT uuid, state, status FROM appliance_vm ORDER BY uuid"),
            "journal": self.rows("SELECT id, name FROM flow_run"),
            "hosts": self.rows(
                "SELECT uuid, available_cpu_capacity, available_memory_capacity FROM host"
            ),
            "primaryStorage": self.rows("SELECT uuid, available_capacity FROM primary_storage"),
            "files": sorted(
                str(p.relative_to(root))
                for root in storages
                for top in ("rootvolumes", "consoles")
                for p in (root / top).rglob("*")
            ),
        }
        if self.kvm:
            lab = lab_id(self.lab.data_dir)
            found["domains"] = _domains_naming(self.lab.data_dir)
            found["links"] = _links_of(lab)
            found["namespaces"] = _namespaces_of(found["links"])
            found["processes"] = _processes_naming(self.lab.data_dir)
            found["hostNat"] = sorted(
                obj.detail for obj in host_leaks.nft_objects() if f"lab={lab}" in obj.detail
            )
            routers = {uuid for uuid, _state, _status in found["routers"]}
            found["runFiles"] = _run_files_of(self.lab.data_dir, routers)
        return found

    def assert_settled(self) -> None:
        """No run left in the journal, no VM or router in an intermediate state."""
        state = self.state()
        assert state["journal"] == [], f"{state['journal']}\n{self.log_tail(40)}"
        stuck = [vm for vm in state["vms"] if vm[1] in vm_states.INTERMEDIATE]
        assert stuck == [], f"VMs in intermediate states: {stuck}"
        routers = [r for r in state["routers"] if r[1] == "Creating" or r[2] == "Connecting"]
        assert routers == [], f"routers left half-made or connecting: {routers}"


def _virsh(*args: str) -> str:
    return subprocess.run(
        ["virsh", "-c", "qemu:///system", *args], capture_output=True, text=True
    ).stdout


def _domains_naming(data_dir: Path) -> list[tuple[str, str]]:
    """The lab's domains (their definition names a path under its data dir) and states
    (a VM's taps live and die with its domain)."""
    found = []
    for name in _virsh("list", "--all", "--name").split():
        if name.startswith("zsl-") and str(data_dir) in _virsh("dumpxml", name):
            found.append((name, _virsh("domstate", name).strip()))
    return sorted(found)


def _run_files_of(data_dir: Path, routers: set[str]) -> list[str]:
    """The lab's files under /run/zstack-lite, not another test's running beside it: its
    routers' dnsmasq run dirs (named after the router's data dir, which lies under one of
    the lab's agents' dirs) with their files, and its routers' short agent sockets."""
    agent_dirs = [data_dir / "agent", *(data_dir / "simulators").glob("*")]
    found: list[str] = []
    if DNSMASQ_RUN_DIR.exists():
        for run_dir in DNSMASQ_RUN_DIR.iterdir():
            uuid = run_dir.name.rsplit("-", 1)[0]
            if any(dnsmasq_run_dir(d / APPLIANCES_DIR / uuid) == run_dir for d in agent_dirs):
                routers.add(uuid)
                found += [str(run_dir), *(str(p) for p in run_dir.rglob("*"))]
    found += [str(SHORT_SOCKET_DIR / f"{uuid}.sock") for uuid in routers]
    return sorted(f for f in found if Path(f).exists() or Path(f).is_symlink())


def _processes_naming(data_dir: Path) -> list[str]:
    """Command lines (not pids: a restart changes those) of the processes that name a
    path under the data dir: the node, its KVM agent, QEMU, router agents, dnsmasq."""
    return sorted(
        proc.detail
        for proc in host_leaks.processes(str(data_dir))
        if host_leaks.mentions(proc.detail, str(data_dir))
    )


def _links_of(lab: str) -> list[str]:
    """Links whose ifalias names the lab (bridges, routers' veths)."""
    out = subprocess.run(["ip", "-d", "-j", "link"], capture_output=True, text=True).stdout
    return sorted(
        link["ifname"]
        for link in json.loads(out or "[]")
        if lab_of_alias(link.get("ifalias", "")) == lab
    )


def _namespaces_of(links: list[str]) -> list[str]:
    """Router namespaces whose veths are the lab's (``zslr…`` for a veth ``zslv…``)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    names = [line.split()[0] for line in out.splitlines() if line.strip()]
    ours = {veth[4:13] for veth in links if veth.startswith("zslv")}
    return sorted(n for n in names if n.startswith("zsl") and any(s in n for s in ours))
