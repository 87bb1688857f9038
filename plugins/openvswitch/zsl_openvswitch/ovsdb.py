"""Open vSwitch through OVSDB (ovsdbapp, OpenStack's maintained library), never through
``ovs-vsctl`` strings.  Blocking: the agent calls it in a thread.

Facts this relies on (checked on these hosts): with no openvswitch kernel module, bridges
use the userspace datapath (``datapath_type=netdev``); a write waits until ovs-vswitchd
has applied it, so with ovs-vswitchd stopped a write would hang until the timeout, and the
liveness check reads its control socket instead; a port whose device cannot be opened is
still added, its Interface row saying why (``ofport`` -1, ``error``).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

from ovs.unixctl.client import UnixctlClient
from ovsdbapp.backend.ovs_idl import connection
from ovsdbapp.schema.open_vswitch import impl_idl

from agentkit.errors import AgentError

log = logging.getLogger(__name__)

RUN_DIR = Path("/var/run/openvswitch")
DB_SOCKET = f"unix:{RUN_DIR / 'db.sock'}"
TIMEOUT = 10
"""Seconds a transaction may take (ovs-vswitchd applying it included)."""


def vswitchd_version(run_dir: Path = RUN_DIR) -> tuple[bool, str]:
    """(whether ovs-vswitchd runs and answers, its version or why not), from its pidfile
    and control socket: nothing is written, so a stopped daemon costs no timeout."""
    try:
        pid = int((run_dir / "ovs-vswitchd.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError) as exc:
        return False, f"ovs-vswitchd does not run ({exc.__class__.__name__}: {exc})"
    err, client = UnixctlClient.create(str(run_dir / f"ovs-vswitchd.{pid}.ctl"))
    if err:
        return False, f"ovs-vswitchd (pid {pid}) does not answer: {os.strerror(err)}"
    try:
        err, error, result = client.transact("version", [])
    finally:
        client.close()
    if err or error:
        return False, f"ovs-vswitchd (pid {pid}) does not answer: {error or os.strerror(err)}"
    return True, str(result).strip()


class Ovsdb:
    """One connection to the local OVSDB, made on first use."""

    def __init__(self, remote: str = DB_SOCKET) -> None:
        self.remote = remote
        self._api: Any = None
        self._lock = threading.Lock()

    @property
    def api(self) -> Any:
        with self._lock:
            if self._api is None:
                running, why = vswitchd_version()
                if not running:
                    raise AgentError(f"Open vSwitch is not usable on this host: {why}")
                try:
                    idl = connection.OvsdbIdl.from_server(self.remote, "Open_vSwitch")
                    self._api = impl_idl.OvsdbIdl(connection.Connection(idl=idl, timeout=TIMEOUT))
                except Exception as exc:
                    raise AgentError(f"cannot connect to OVSDB at {self.remote}: {exc}") from None
            return self._api

    def _commit(self, what: str, *commands: Any) -> None:
        running, why = vswitchd_version()
        if not running:  # a write would wait for it until the timeout
            raise AgentError(f"cannot {what}: {why}")
        try:
            with self.api.transaction(check_error=True) as txn:
                for command in commands:
                    txn.add(command)
        except AgentError:
            raise
        except Exception as exc:
            raise AgentError(f"cannot {what}: {type(exc).__name__}: {exc}") from None

    def bridges(self) -> list[str]:
        return list(self.api.list_br().execute(check_error=True))

    def ports(self, bridge: str) -> list[str]:
        if bridge not in self.bridges():
            return []
        return list(self.api.list_ports(bridge).execute(check_error=True))

    def add_bridge(self, bridge: str, uplink: str) -> None:
        """The bridge (userspace datapath), and ``uplink`` as a trunk port if given."""
        commands = [self.api.add_br(bridge, may_exist=True, datapath_type="netdev")]
        if uplink:
            commands.append(self.api.add_port(bridge, uplink, may_exist=True))
        self._commit(f"create OVS bridge {bridge}", *commands)
        if uplink:
            self._check_interface(uplink, bridge)

    def delete_bridge(self, bridge: str) -> None:
        self._commit(f"delete OVS bridge {bridge}", self.api.del_br(bridge, if_exists=True))

    def plug(self, bridge: str, port: str, vlan: int | None) -> None:
        """``port`` on ``bridge``: an access port of ``vlan``, or untagged."""
        # One transaction: a port without its tag would be a trunk of every VLAN.
        self._commit(
            f"plug {port} into OVS bridge {bridge}",
            self.api.del_port(port, if_exists=True),  # from any other bridge
            self.api.add_port(bridge, port, may_exist=True),
            self.api.db_set("Port", port, ("tag", vlan if vlan is not None else [])),
        )
        self._check_interface(port, bridge)

    def unplug(self, port: str) -> None:
        self._commit(f"unplug {port}", self.api.del_port(port, if_exists=True))

    def tag(self, port: str) -> int | None:
        tag = self.api.db_get("Port", port, "tag").execute(check_error=True)
        return int(tag[0]) if isinstance(tag, list) and tag else (tag or None)

    def _check_interface(self, name: str, bridge: str) -> None:
        """A port whose device Open vSwitch cannot open is taken out again, and the error
        names why (OVSDB accepted it all the same)."""
        ofport = self.api.db_get("Interface", name, "ofport").execute(check_error=True)
        if ofport in ([-1], -1):
            error = self.api.db_get("Interface", name, "error").execute(check_error=True)
            self._commit(f"take {name} off {bridge}", self.api.del_port(name, if_exists=True))
            raise AgentError(f"Open vSwitch cannot use {name}: {error or 'no reason given'}")
