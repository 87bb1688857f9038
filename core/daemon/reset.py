"""``zstack-lite reset``: remove everything a lab made on this host, then its data dir.

1. The API phase, when the lab has a database: the node runs (started if need be) and
   everything goes through the same flows as the API: VMs destroyed and expunged,
   virtual routers destroyed, router offerings, L3 networks (private first), L2 networks
   (their bridges and host NAT), images deleted and expunged, hosts deleted (the agents
   the node owns stop with them).  One line per resource; a failure is reported and the
   reset goes on.
2. The node stops.
3. The sweep (:mod:`agent.lab_cleanup`): whatever is still on the host with the lab's
   identity or naming its data dir; the only phase when the data dir was deleted by hand.
4. The data dir goes.

A second reset finds nothing and says so.  Exit status 0 when everything went, 1 when
something could not be removed (the output names it).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.lab_cleanup import sweep
from contracts.names import lab_id
from core.daemon import control
from core.daemon.node_socket import NodeSocket, NodeUnreachable
from core.kernel.properties import Properties

Say = Callable[[str], None]
DB_FILE = "zstack.db"


class ApiFailed(RuntimeError):
    """An API call answered an error (or no node answered); the message says which."""


def has_database(props: Properties) -> bool:
    """The lab has a database the node can start on: its SQLite file in the data dir, or
    an external database (``core.db_url``) while the data dir exists."""
    if props["core.db_url"]:
        return props.data_dir.is_dir()
    return (props.data_dir / DB_FILE).exists()


def _error_text(reply: Any) -> str:
    error = (reply or {}).get("error") or {}
    text = str(error.get("description") or error or reply)
    details = error.get("details") if isinstance(error, dict) else None
    return f"{text} ({details})" if details else text


@dataclass
class ApiPhase:
    """Deletes the lab's resources through the node's API, in dependency order."""

    node: NodeSocket
    say: Say
    failures: list[str] = field(default_factory=list)
    removed: int = 0
    vm_uuids: set[str] = field(default_factory=set)

    def call(self, api: str, **params: Any) -> Any:
        try:
            _status, reply = self.node.post(f"/v1/api/{api}", params)
        except (NodeUnreachable, OSError) as exc:
            raise ApiFailed(f"{api}: {exc}") from None
        if not isinstance(reply, dict) or not reply.get("success"):
            raise ApiFailed(_error_text(reply))
        return reply.get("inventories", reply.get("inventory"))

    def query(self, api: str, **params: Any) -> list[dict[str, Any]]:
        try:
            return list(self.call(api, **params) or [])
        except ApiFailed as exc:
            self.failures.append(f"{api}: {exc}")
            self.say(f"listing with {api} failed: {exc}")
            return []

    def exists(self, api: str, uuid: str) -> bool:
        return bool(self.call(api, conditions=[f"uuid={uuid}"]))

    def step(self, verb: str, what: str, resource: dict[str, Any], *actions: Callable[[], Any]):
        """Run ``actions`` on one resource, printing one line: ``<verb> <what> <name> ... done``."""
        label = f"{what} {resource.get('name') or resource['uuid']}"
        try:
            for action in actions:
                action()
        except ApiFailed as exc:
            self.failures.append(f"{verb} {label}: {exc}")
            self.say(f"{verb} {label} ... failed: {exc}")
            return
        self.removed += 1
        self.say(f"{verb} {label} ... done")

    def run(self) -> None:
        for vm in self.query("QueryVmInstance"):
            uuid = vm["uuid"]
            self.vm_uuids.add(uuid)

            def destroy(vm: dict[str, Any] = vm) -> None:
                if vm["state"] != "Destroyed":
                    self.call("DestroyVmInstance", uuid=vm["uuid"])

            def expunge(uuid: str = uuid) -> None:
                if self.exists("QueryVmInstance", uuid):  # a Direct deletion policy did
                    self.call("ExpungeVmInstance", uuid=uuid)

            self.step("destroying", "VM", vm, destroy, expunge)
        for router in self.query("QueryVirtualRouterVm"):
            self.step(
                "destroying",
                "virtual router",
                router,
                lambda r=router: self.call("DestroyVirtualRouter", uuid=r["uuid"]),
            )
        for offering in self.query("QueryVirtualRouterOffering"):
            self.step(
                "deleting",
                "virtual router offering",
                offering,
                lambda o=offering: self.call("DeleteVirtualRouterOffering", uuid=o["uuid"]),
            )
        l3s = sorted(self.query("QueryL3Network"), key=lambda n: n.get("category") != "Private")
        for l3 in l3s:
            self.step(
                "deleting",
                "L3 network",
                l3,
                lambda n=l3: self.call("DeleteL3Network", uuid=n["uuid"]),
            )
        for l2 in self.query("QueryL2Network"):
            self.step(
                "deleting",
                "L2 network",
                l2,
                lambda n=l2: self.call("DeleteL2Network", uuid=n["uuid"]),
            )
        for image in self.query("QueryImage"):

            def delete(image: dict[str, Any] = image) -> None:
                if image.get("status") != "Deleted":
                    self.call("DeleteImage", uuid=image["uuid"])

            def expunge_image(uuid: str = image["uuid"]) -> None:
                if self.exists("QueryImage", uuid):  # a Direct deletion policy did
                    self.call("ExpungeImage", uuid=uuid)

            self.step("deleting", "image", image, delete, expunge_image)
        for host in self.query("QueryHost"):
            self.step(
                "deleting", "host", host, lambda h=host: self.call("DeleteHost", uuid=h["uuid"])
            )


def say_now(line: str) -> None:
    print(line, flush=True)


def reset_lab(props: Properties, say: Say = say_now) -> int:
    """Reset the lab of ``props`` (see the module's doc); the exit status."""
    data_dir = Path(props.data_dir).absolute()
    say(f"resetting the lab on {data_dir} (lab {lab_id(data_dir)})")
    failures: list[str] = []
    vm_uuids: set[str] = set()
    api_removed = 0
    if has_database(props):
        try:
            control.ensure_running(props, announce=say)
        except control.ControlError as exc:
            failures.append(f"starting the node: {exc}")
            say(f"the management node does not start ({exc}); sweeping the host instead")
        else:
            phase = ApiPhase(NodeSocket(control.socket_of(props)), say)
            phase.run()
            failures += phase.failures
            vm_uuids, api_removed = phase.vm_uuids, phase.removed
    elif data_dir.exists():
        say(f"{data_dir} holds no database: sweeping what the lab left on this host")
    else:
        say(f"{data_dir} does not exist: sweeping what the lab left on this host")
    try:
        pid = control.stop_node(props)
        if pid is not None:
            say(f"stopped the management node (pid {pid})")
    except control.ControlError as exc:
        say(f"{exc}; the sweep ends it")
    swept = sweep(data_dir, vm_uuids, report=say)
    failures += swept.failures
    removed_dir = False
    if data_dir.exists():
        try:
            shutil.rmtree(data_dir)
            removed_dir = True
            say(f"removed the data dir {data_dir}")
        except OSError as exc:
            failures.append(f"the data dir {data_dir}: {exc}")
            say(f"could not remove the data dir {data_dir}: {exc}")
    if not (api_removed or swept.removed or removed_dir or failures):
        say(f"nothing of the lab on {data_dir} was left on this host")
        return 0
    say(
        f"reset done: {api_removed} resource(s) deleted through the API, "
        f"{len(swept.removed)} leftover object(s) swept from the host"
        + (", the data dir removed" if removed_dir else "")
    )
    if failures:
        say(f"{len(failures)} thing(s) could not be removed:")
        for failure in failures:
            say(f"  - {failure}")
        return 1
    return 0
