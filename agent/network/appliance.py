"""The virtual-router appliance as a network namespace (blocking; run in a thread).

An appliance ``<uuid>`` is:

* the namespace ``zsl-vr-<first 9 hex of uuid>``, its ``lo`` up;
* per NIC ``n`` a veth pair: the host end ``zslv<9 hex><n>`` enslaved to the NIC's
  Linux bridge (or, for a NIC with a virtual port type, with no Linux master and
  plugged into its bridge by the :class:`~agent.extension_points.PortPlugger`
  registered for the type, tagged with its VLAN) and up, its ifalias naming the lab
  (``zstack-lite lab=<lab id>``), the other end ``eth<n>`` inside the namespace with
  the NIC's MAC and ``ip/prefixLength``, up; a default route via ``defaultGateway``
  if given;
* the directory ``<data dir>/appliances/<uuid>`` (0700) with ``appliance.json`` (the
  spec, for checks), ``agent.token`` (0600, made before the agent starts so the core
  can read it), and the virtual-router agent's socket, pid, log and stderr;
* the virtual-router agent, run inside the namespace with ``ip netns exec``.

:meth:`ApplianceManager.create` is idempotent: it makes what is missing (a deleted
veth, a dead agent) and leaves the rest.  When a step fails, what *this call* made is
undone in reverse order and the error names the step.  :meth:`destroy` ends every
process in the namespace (found by its ``/proc/<pid>/ns/net`` inode), has every
registered plugger unplug the appliance's veths (those it finds, and those its recorded
spec names: a switch may keep a port whose link is gone), deletes the host ends, the
namespace and the directory; missing pieces are fine.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Final

from pyroute2 import IPRoute, netns

from agent.extension_points import PortPlugger, PortPluggers, plugger_for, unplug_everywhere
from agent.network import links
from agent.network.base import (
    AgentCommand,
    ApplianceInfo,
    ApplianceNic,
    ApplianceSpec,
    ApplianceStatus,
    check_pluggable,
)
from agent.network.bridges import bridge_index
from agent.network.processes import (
    AppliancePaths,
    ProcessTable,
    default_agent_command,
    make_dir,
    recorded_agent,
    terminate,
    wait_for_socket,
)
from agentkit.auth import create_token
from agentkit.errors import AgentError
from agentkit.procs import cmdline
from contracts.names import lab_alias, namespace_name, veth_index, veth_name

log = logging.getLogger(__name__)

NETNS_DIR: Final = Path("/run/netns")

Undo = Callable[[], None]


class StepFailed(AgentError):
    pass


class ApplianceManager:
    def __init__(
        self,
        appliances_dir: Path,
        start_timeout: float = 20.0,
        pluggers: PortPluggers | None = None,
    ) -> None:
        self.appliances_dir = appliances_dir
        self.start_timeout = start_timeout
        self.pluggers: PortPluggers = pluggers if pluggers is not None else {}
        """Virtual port type -> its plugger: the network driver's own dict, which agent
        plugins fill at their start."""
        self.lab = ""
        """The lab whose appliances these are (its veths' ifalias says so); "" for none."""
        self.processes = ProcessTable()

    def paths(self, appliance_uuid: str) -> AppliancePaths:
        return AppliancePaths(self.appliances_dir / appliance_uuid)

    # -- create ------------------------------------------------------------------------
    def create(
        self, spec: ApplianceSpec, agent_command: AgentCommand | None = None
    ) -> ApplianceInfo:
        uuid = spec.appliance_uuid
        ns = namespace_name(uuid)
        paths = self.paths(uuid)
        paths.check_socket_path()
        check_pluggable(spec, self.pluggers)
        undo: list[tuple[str, Undo]] = []
        step = "make the directory"
        try:
            if make_dir(paths.dir):
                undo.append((step, paths.remove))
            step = "write the appliance spec"
            paths.spec.write_text(json.dumps(asdict(spec), indent=2) + "\n")
            step = "write the token file"
            create_token(paths.token)
            step = f"make the namespace {ns}"
            if not namespace_exists(ns):
                netns.create(ns)
                undo.append((step, lambda: self._end_namespace(ns)))
                log.info("created namespace %s", ns)
            with IPRoute() as ipr, IPRoute(netns=ns) as nsr:
                step = "set lo up"
                nsr.link("set", index=nsr.link_lookup(ifname="lo")[0], state="up")
                for i, nic in enumerate(spec.nics):
                    step = f"plug NIC {i} ({nic.mac}) into bridge {nic.bridge_name}"
                    made = self._ensure_nic(ipr, nsr, ns, uuid, i, nic)
                    if made is not None:
                        undo.append((step, made))
                if spec.default_gateway:
                    step = f"set the default route via {spec.default_gateway}"
                    _ensure_default_route(nsr, spec.default_gateway)
            step = "start the virtual-router agent"
            pid = recorded_agent(paths)
            if pid is not None and pid not in namespace_pids(ns):
                terminate([pid], self.processes)  # left behind in a namespace now gone
                pid = None
            if pid is None:
                _end_unrecorded_agents(ns, paths, self.processes)
                argv = ["ip", "netns", "exec", ns, *paths.agent_argv(_command(agent_command))]
                proc = self.processes.start(argv, paths)
                pid = proc.pid
                undo.append((step, lambda: terminate([proc.pid], self.processes)))
                log.info("started the virtual-router agent of %s in %s (pid %d)", uuid, ns, pid)
                wait_for_socket(self.processes, pid, paths, self.start_timeout)
            elif not paths.socket.exists():
                wait_for_socket(self.processes, pid, paths, self.start_timeout)
        except Exception as exc:
            failures = _undo(undo)
            done = "; rolled back what this call made" + (
                f" except: {'; '.join(failures)}" if failures else ""
            )
            raise StepFailed(
                f"cannot create appliance {uuid}: step '{step}' failed: {links.message(exc)}{done}"
            ) from None
        return ApplianceInfo(
            namespace=ns, socket_path=str(paths.socket), token_file=str(paths.token), agent_pid=pid
        )

    def _ensure_nic(
        self, ipr: IPRoute, nsr: IPRoute, ns: str, uuid: str, i: int, nic: ApplianceNic
    ) -> Undo | None:
        """Make NIC ``i`` right; an undo if this call made its veth pair."""
        host_name, peer_name = veth_name(uuid, i), f"eth{i}"
        # Refuse before making anything: a Linux bridge that is not there, a type no
        # plugin serves.  A virtual port's bridge is the plugger's to find.
        plugger = (
            plugger_for(self.pluggers, nic.virtual_port_type) if nic.virtual_port_type else None
        )
        bridge = bridge_index(ipr, nic.bridge_name) if plugger is None else 0
        host = links.find(ipr, host_name)
        peer = links.find(nsr, peer_name)
        if host is not None and (peer is None or links.kind_of(host) != "veth"):
            links.delete_link(ipr, host["index"])  # ours by name; half of a pair is no use
            host = None
        if host is None and peer is not None:
            links.delete_link(nsr, peer["index"])
            peer = None
        made: Undo | None = None
        if host is None:
            ipr.link(
                "add",
                ifname=host_name,
                kind="veth",
                peer={"ifname": peer_name, "net_ns_fd": ns, "address": nic.mac},
            )
            log.info("created veth %s <-> %s:%s", host_name, ns, peer_name)

            def made() -> None:
                if plugger is not None:
                    plugger.unplug(host_name)
                with IPRoute() as r:
                    link = links.find(r, host_name)
                    if link is not None:
                        links.delete_link(r, link["index"])

            host = links.find(ipr, host_name)
            peer = links.find(nsr, peer_name)
            if host is None or peer is None:
                raise AgentError(f"veth {host_name} vanished right after it was made")
        try:
            if self.lab:
                links.set_alias(ipr, host, lab_alias(self.lab))
            self._set_master(ipr, host, bridge)
            if not links.is_up(host):
                ipr.link("set", index=host["index"], state="up")
            if links.mac_of(peer) != nic.mac:
                nsr.link("set", index=peer["index"], address=nic.mac)
            links.add_address(nsr, peer["index"], nic.ip, nic.prefix_length)
            if not links.is_up(peer):
                nsr.link("set", index=peer["index"], state="up")
            if plugger is not None:
                plugger.plug(nic.bridge_name, host_name, nic.vlan_id)
        except Exception:
            if made is not None:
                made()
            raise
        return made

    def _set_master(self, ipr: IPRoute, host: links.Link, bridge: int) -> None:
        """Enslave the host end to the Linux bridge ``bridge``, or (0, a virtual port)
        release it from a Linux bridge it is left in; a port of a virtual switch (whose
        kernel master is the switch's, e.g. ``ovs-system``) is the plugger's."""
        master = links.master_of(host)
        if master == bridge:
            return
        if bridge:
            if master:  # a virtual port before (the NIC's type changed), or stray
                unplug_everywhere(self.pluggers, [links.name_of(host)])
            ipr.link("set", index=host["index"], master=bridge)
            return
        old = links.by_index(ipr, master)
        if old is not None and links.kind_of(old) == "bridge":
            ipr.link("set", index=host["index"], master=0)

    def _end_namespace(self, ns: str) -> None:
        terminate(namespace_pids(ns), self.processes)
        remove_namespace(ns)

    # -- destroy -----------------------------------------------------------------------
    def destroy(self, appliance_uuid: str) -> None:
        ns = namespace_name(appliance_uuid)
        paths = self.paths(appliance_uuid)
        pids = set(namespace_pids(ns)) if namespace_exists(ns) else set()
        recorded = recorded_agent(paths)
        if recorded is not None:
            pids.add(recorded)
        terminate(pids, self.processes)
        with IPRoute() as ipr:
            veths = [
                link
                for link in ipr.link("dump")
                if veth_index(appliance_uuid, links.name_of(link)) is not None
            ]
            if self.pluggers:
                spec = read_spec(paths)
                recorded_veths = (
                    [veth_name(appliance_uuid, i) for i in range(len(spec.nics))] if spec else []
                )
                unplug_everywhere(self.pluggers, [*map(links.name_of, veths), *recorded_veths])
            for link in veths:
                links.delete_link(ipr, link["index"])
        if namespace_exists(ns):
            remove_namespace(ns)
            log.info("removed namespace %s", ns)
        paths.remove()

    # -- check -------------------------------------------------------------------------
    def check(self, appliance_uuid: str) -> ApplianceStatus:
        ns = namespace_name(appliance_uuid)
        paths = self.paths(appliance_uuid)
        self.processes.reap()
        has_ns = namespace_exists(ns)
        pid = recorded_agent(paths)
        running = pid is not None and has_ns and pid in namespace_pids(ns)
        spec = read_spec(paths)
        missing: list[str] = []
        if spec is not None:
            if not has_ns:
                missing = [nic.mac for nic in spec.nics]
            else:
                with IPRoute() as ipr, IPRoute(netns=ns) as nsr:
                    missing = [
                        nic.mac
                        for i, nic in enumerate(spec.nics)
                        if not _nic_ok(ipr, nsr, appliance_uuid, i, nic, self.pluggers)
                    ]
        return ApplianceStatus(namespace=has_ns, agent_running=running, missing_nics=tuple(missing))


def _nic_ok(
    ipr: IPRoute, nsr: IPRoute, uuid: str, i: int, nic: ApplianceNic, pluggers: PortPluggers
) -> bool:
    host_name = veth_name(uuid, i)
    host = links.find(ipr, host_name)
    peer = links.find(nsr, f"eth{i}")
    if host is None or peer is None or links.mac_of(peer) != nic.mac:
        return False
    if nic.virtual_port_type:
        plugger: PortPlugger | None = pluggers.get(nic.virtual_port_type)
        return plugger is not None and plugger.plugged(nic.bridge_name, host_name, nic.vlan_id)
    bridge = links.find(ipr, nic.bridge_name)
    return bridge is not None and links.master_of(host) == bridge["index"]


def _end_unrecorded_agents(ns: str, paths: AppliancePaths, table: ProcessTable) -> None:
    """A host agent that died between starting the appliance's agent and recording its pid
    left one running that nothing knows: end it, so that the new one is the only one."""
    strays = [pid for pid in namespace_pids(ns) if str(paths.socket) in cmdline(pid)]
    if strays:
        log.warning("ending unrecorded virtual-router agents %s in %s", strays, ns)
        terminate(strays, table)


def _ensure_default_route(nsr: IPRoute, gateway: str) -> None:
    for route in nsr.route("dump", family=2):
        if (
            route["dst_len"] == 0
            and route["table"] == links.MAIN_TABLE
            and route.get_attr("RTA_GATEWAY") == gateway
        ):
            return
    nsr.route("replace", dst="0.0.0.0/0", gateway=gateway)


def _command(agent_command: AgentCommand | None) -> list[str]:
    return list(agent_command) if agent_command else default_agent_command()


def _undo(undo: list[tuple[str, Undo]]) -> list[str]:
    failures = []
    for step, action in reversed(undo):
        try:
            action()
        except Exception as exc:
            log.exception("rolling back %r failed", step)
            failures.append(f"undoing '{step}': {links.message(exc)}")
    return failures


# -- namespaces ---------------------------------------------------------------------------
def namespace_exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def remove_namespace(ns: str) -> None:
    try:
        netns.remove(ns)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno != errno.ENOENT:
            raise


def namespace_pids(ns: str) -> list[int]:
    """Every process whose network namespace is ``ns`` (by device and inode)."""
    try:
        target = os.stat(NETNS_DIR / ns)
    except FileNotFoundError:
        return []
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            st = os.stat(f"/proc/{entry}/ns/net")
            if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                pids.append(int(entry))
    return pids


def read_spec(paths: AppliancePaths) -> ApplianceSpec | None:
    try:
        raw = json.loads(paths.spec.read_text())
        return ApplianceSpec(
            appliance_uuid=raw["appliance_uuid"],
            nics=tuple(ApplianceNic(**nic) for nic in raw["nics"]),
            default_gateway=raw.get("default_gateway", ""),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
