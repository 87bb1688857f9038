"""The host service: add, connect, reconnect, ping and delete hosts.

Every host is driven through its agent (a KVM agent over libvirt, or a
simulator agent with the same contract).  Connecting runs the declared chain
``hostConnect``.  A ping tracker pings every host each ``host.ping.interval``
seconds: an answer with another host uuid means the agent restarted (so the
host is reconnected); ``host.ping.maxFailure`` failures in a row mark it
Disconnected, and it is reconnected as soon as its agent answers again.

The agents of this machine (the local KVM agent, simulators) belong to the
node (:mod:`core.host.local_agent`): started or adopted at node start, started
again by the ping tracker when they die, stopped when the node stops.  Why a
host is not Connected (its agent's port is held by another program, its connect
failed) is kept as the host's problem (:meth:`HostPlugin.problems`) until it
connects.  API calls that may change something wait (bounded) for hosts that
are connecting, so a call right after a restart does not find no host.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import events as ev
from contracts import kvm
from core.cluster.models import ClusterVO
from core.config.definitions import (
    GlobalConfigDef,
    GlobalConfigProvider,
    GlobalConfigUpdateExtensionPoint,
)
from core.config.plugin import GlobalConfigPlugin
from core.host import global_config
from core.host.api import AddKVMHost, AddSimulatorHost, DeleteHost, QueryHost, ReconnectHost
from core.host.capacity import (
    apply_capacity_settings,
    capacity_configs,
    cpu_ratio,
    reserved_capacity,
)
from core.host.connect import CHAIN, DEFAULT_FLOWS, HostConnectData
from core.host.local_agent import LocalAgent, free_port, is_local
from core.host.models import HostVO
from core.kernel.api import ApiMessage
from core.kernel.errors import OperationError, argerr, not_found, operr
from core.kernel.extensions import Component, Plugin, ReadinessCheck
from core.kernel.periodic import PeriodicTask
from core.kernel.rest import AgentClient
from core.kernel.service import GlobalApiInterceptor, InterceptorPosition, Service, handles
from core.management_node.plugin import NodeStatusExtensionPoint
from core.tag.plugin import TagPlugin, delete_all_tags
from core.vm.models import VmInstanceVO

log = logging.getLogger(__name__)
STATUS_EVENT = ev.HostStatusChanged.PATH
CONNECT_WAIT = 120.0
"""Seconds an API call waits for hosts that are connecting before it goes on."""
_in_connect: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "zstack_lite_in_host_connect", default=False
)
"""True in a host connect (and the calls it makes), which must not wait for itself."""


class HostPlugin(
    Plugin,
    GlobalConfigProvider,
    Service,
    Component,
    ReadinessCheck,
    GlobalApiInterceptor,
    NodeStatusExtensionPoint,
    GlobalConfigUpdateExtensionPoint,
):
    implements = (
        GlobalConfigProvider,
        Service,
        Component,
        ReadinessCheck,
        GlobalApiInterceptor,
        NodeStatusExtensionPoint,
        GlobalConfigUpdateExtensionPoint,
    )
    order = 500
    service_id = "host"
    queries = (QueryHost,)
    position = InterceptorPosition.SYSTEM

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        node.declare_chain(CHAIN, DEFAULT_FLOWS, HostConnectData)
        self._agents: dict[str, AgentClient] = {}
        self._local: dict[str, LocalAgent] = {}
        """The agents this node owns, by host uuid (simulators, the local KVM agent)."""
        self._problems: dict[str, str] = {}
        self._connects: dict[str, asyncio.Event] = {}
        """Hosts whose connect is under way; the event is set when it ends."""
        self._agent_locks: dict[str, asyncio.Lock] = {}
        self._failures: dict[str, int] = {}
        self._tracker = PeriodicTask(
            node,
            "host-ping-tracker",
            global_config.CATEGORY,
            global_config.PING_INTERVAL.name,
            self._ping_all,
        )
        self._reconnecting: set[asyncio.Task[Any]] = set()

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    async def after_update_global_config(
        self, definition: GlobalConfigDef, old_value: str, new_value: str
    ) -> None:
        """A setting host totals derive from (the CPU over-provisioning ratio, a reserved
        capacity such as kvm.reservedMemory) applies to every host at once, not at its
        next reconnect."""
        if definition.identity not in capacity_configs(self.node):
            return
        ratio = cpu_ratio(self.node)

        def apply(session: Session) -> None:
            types = set(session.scalars(select(HostVO.hypervisor_type).distinct()))
            reserved = {t: reserved_capacity(self.node, t) for t in types}
            apply_capacity_settings(session, ratio, reserved)

        await self.node.db.run(apply)
        log.info("%s is %s: every host's capacity follows", definition.identity, new_value)

    # -- life cycle ---------------------------------------------------------------

    async def start(self) -> None:
        hosts = await self.node.db.run(
            lambda s: [_detached(s, uuid) for uuid in s.scalars(select(HostVO.uuid)).all()]
        )
        for host in hosts:
            task = asyncio.create_task(self._revive(host), name=f"revive-host-{host.uuid}")
            self._reconnecting.add(task)
            task.add_done_callback(self._reconnecting.discard)
        self._tracker.start()

    async def reconnected(self, timeout: float) -> None:
        """Wait (at most ``timeout`` seconds) for the reconnections started at node start."""
        if self._reconnecting:
            await asyncio.wait(list(self._reconnecting), timeout=timeout)

    async def settled(self, timeout: float) -> None:
        """Ready means every host's connection settled (Connected, or Disconnected with a
        reason): the node says it is ready only then."""
        await self.reconnected(timeout)

    async def stop(self) -> None:
        await self._tracker.stop()
        tasks = list(self._reconnecting)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in self._agents.values():
            await client.close()
        self._agents.clear()
        agents = list(self._local.values())
        self._local.clear()
        await asyncio.gather(*(asyncio.to_thread(a.stop) for a in agents))

    async def _revive(self, host: HostVO) -> None:
        """At node start: make sure a local agent runs, then reconnect."""
        try:
            await self._ensure_local_agent(host)
            await self.connect(host.uuid, new_host=False)
        except OperationError as exc:  # kept as the host's problem
            log.warning("host %s could not be reconnected at start: %s", host.name, exc.error)

    # -- what the node tells about its hosts -------------------------------------------------

    def problems(self) -> dict[str, str]:
        """Why each host that is not Connected is not, by host uuid (for status views)."""
        return dict(self._problems)

    async def node_status(self) -> dict[str, Any]:
        hosts = await self.node.db.run(
            lambda s: [h.to_inventory() for h in s.scalars(select(HostVO).order_by(HostVO.name))]
        )
        listed = [
            {
                "uuid": h["uuid"],
                "name": h["name"],
                "hypervisorType": h["hypervisorType"],
                "address": f"{h['managementIp']}:{h['agentPort']}",
                "status": h["status"],
                "problem": self._problems.get(h["uuid"]) if h["status"] != "Connected" else None,
            }
            for h in hosts
        ]
        problems = [f"host {h['name']}: {h['problem']}" for h in listed if h["problem"]]
        return {"hosts": listed, "problems": problems}

    async def intercept(self, msg: ApiMessage) -> ApiMessage:
        """Calls that may change something wait for hosts that are connecting (bounded)."""
        if msg.read_only or _in_connect.get() or not self._connects:
            return msg
        waits = asyncio.gather(*(done.wait() for done in self._connects.values()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waits, CONNECT_WAIT)
        return msg

    # -- agents -----------------------------------------------------------------------

    def _local_kvm_agent(self, port: int) -> LocalAgent:
        return LocalAgent(self.node.data_dir / "agent", port, "libvirt", self.node.data_dir)

    def _simulator_agent(self, host_uuid: str, port: int, cpu: int, memory: int) -> LocalAgent:
        return LocalAgent(
            self.node.data_dir / "simulators" / host_uuid,
            port,
            "simulator",
            self.node.data_dir,
            ["--sim-cpu", str(cpu or 8), "--sim-memory", str(memory or 32 << 30)],
        )

    def _owned_agent(self, host: HostVO) -> LocalAgent | None:
        """The agent this node owns for ``host``, None for a remote host."""
        agent = self._local.get(host.uuid)
        if agent is None:
            if host.hypervisor_type == "Simulator":
                agent = self._simulator_agent(
                    host.uuid, host.agent_port, host.cpu_num, host.total_physical_memory
                )
            elif is_local(host.management_ip):
                agent = self._local_kvm_agent(host.agent_port)
            else:
                return None
            self._local[host.uuid] = agent
        return agent

    async def _ensure_local_agent(self, host: HostVO) -> None:
        """Start (or adopt) the host's agent if this node owns it, and keep its token.  An
        OperationError naming the problem (e.g. another program holds its port) is kept as
        the host's problem, the host marked Disconnected, and raised."""
        agent = self._owned_agent(host)
        if agent is None:
            return
        lock = self._agent_locks.setdefault(host.uuid, asyncio.Lock())
        try:
            async with lock:
                token = await agent.ensure_running()
        except OperationError as exc:
            self._problems[host.uuid] = _reason(exc)
            await self._set_status(host.uuid, "Disconnected")
            raise
        if token != host.agent_token:  # a new host, or its agent dir was made anew
            await self._adopt_token(host.uuid, token)

    async def _adopt_token(self, host_uuid: str, token: str) -> None:
        await self.node.db.run(lambda s: setattr(s.get(HostVO, host_uuid), "agent_token", token))
        client = self._agents.pop(host_uuid, None)
        if client is not None:
            await client.close()

    def agent(self, host_uuid: str, host: HostVO | None = None) -> AgentClient:
        """The client of a host's agent (for services that drive hosts)."""
        client = self._agents.get(host_uuid)
        if client is None:
            if host is None:
                raise not_found("HostVO", host_uuid)
            client = AgentClient(
                f"http://{host.management_ip}:{host.agent_port}",
                host.agent_token,
                self.node.rest,
                f"host {host.name} ({host.management_ip}:{host.agent_port})",
            )
            self._agents[host_uuid] = client
        return client

    async def agent_of(self, host_uuid: str) -> AgentClient:
        """The client of a host's agent, loading the host if needed."""
        client = self._agents.get(host_uuid)
        if client is not None:
            return client
        host = await self.node.db.run(lambda s: _detached(s, host_uuid))
        return self.agent(host_uuid, host)

    async def local_agent(self, zone_uuid: str) -> AgentClient:
        """The agent of a Connected host on this machine in the zone (for local storage)."""

        def find(session: Session) -> HostVO | None:
            for host in session.scalars(
                select(HostVO).where(HostVO.zone_uuid == zone_uuid, HostVO.status == "Connected")
            ):
                if is_local(host.management_ip):
                    session.expunge(host)
                    return host
            return None

        host = await self.node.db.run(find)
        if host is None:
            raise operr(
                f"no Connected host on this machine in zone[uuid:{zone_uuid}] can "
                "prepare local storage; add this machine as a host first"
            )
        return self.agent(host.uuid, host)

    # -- connecting ---------------------------------------------------------------------

    async def connect(self, host_uuid: str, *, new_host: bool) -> dict[str, Any]:
        """Run the connect chain; Connected on success, else Disconnected (or raise)."""
        done = self._connects.get(host_uuid)
        if done is not None and not _in_connect.get():  # one connect of a host at a time
            await done.wait()
        done = self._connects[host_uuid] = asyncio.Event()
        token = _in_connect.set(True)
        try:
            return await self._connect(host_uuid, new_host)
        except OperationError as exc:
            self._problems[host_uuid] = _reason(exc)
            raise
        finally:
            _in_connect.reset(token)
            if self._connects.get(host_uuid) is done:
                del self._connects[host_uuid]
            done.set()

    async def _connect(self, host_uuid: str, new_host: bool) -> dict[str, Any]:
        host = await self.node.db.run(lambda s: _detached(s, host_uuid))
        self.agent(host_uuid, host)  # the flows' client (HostConnectData.agent)
        await self._set_status(host_uuid, "Connecting")
        data = HostConnectData(
            host_uuid=host_uuid, new_host=new_host, hypervisor_type=host.hypervisor_type
        )
        # FlowChain.start is typed for dict data (core.kernel.flow); it takes the chain's FlowData
        outcome = await self.node.chain(CHAIN).start(data.bind(self.node))  # type: ignore[arg-type]
        if not outcome.succeeded:
            await self._set_status(host_uuid, "Disconnected")
            outcome.raise_for_error(f"cannot connect host {host.name}")
        self._failures.pop(host_uuid, None)
        self._problems.pop(host_uuid, None)
        return await self._set_status(host_uuid, "Connected")

    async def _set_status(self, host_uuid: str, status: str) -> dict[str, Any]:
        def change(session: Session) -> tuple[str, dict[str, Any]]:
            host = session.get(HostVO, host_uuid)
            if host is None:
                raise not_found("HostVO", host_uuid)
            old, host.status = host.status, status
            session.flush()
            return old, host.to_inventory()

        old, inventory = await self.node.db.run(change)
        if old != status:
            event = ev.HostStatusChanged(
                host_uuid=host_uuid, old_status=old, new_status=status, inventory=inventory
            )
            self.node.events.publish(event.PATH, event.to_json())
        return inventory

    # -- the ping tracker -----------------------------------------------------------------

    async def _ping_all(self) -> None:
        uuids = await self.node.db.run(lambda s: list(s.scalars(select(HostVO.uuid))))
        await asyncio.gather(*(self.ping(u) for u in uuids), return_exceptions=True)

    async def ping(self, host_uuid: str) -> None:
        """Ping one host's agent and act on the answer (reconnect, or count a failure).

        An agent this node owns that does not answer is started again at once (or its
        problem, such as a port another program holds, is recorded and retried next time).
        """
        configs = self.node.plugin(GlobalConfigPlugin)
        host = await self.node.db.run(lambda s: _detached(s, host_uuid))
        try:
            answer = await self.agent(host_uuid, host).send(
                kvm.PingCmd(host_uuid=host_uuid), timeout=10
            )
        except OperationError as exc:
            failures = self._failures[host_uuid] = self._failures.get(host_uuid, 0) + 1
            limit = configs.value(global_config.CATEGORY, global_config.PING_MAX_FAILURE.name)
            log.info("ping of host %s failed (%d/%d): %s", host.name, failures, limit, exc.error)
            if self._owned_agent(host) is not None:
                await self._restart_agent(host)
                return
            if failures >= limit and host.status != "Disconnected":
                await self._set_status(host_uuid, "Disconnected")
            return
        self._failures.pop(host_uuid, None)
        if answer.host_uuid != host_uuid or host.status != "Connected":
            log.info(
                "host %s needs a reconnect (agent restarted or host was %s)", host.name, host.status
            )
            with contextlib.suppress(OperationError):
                await self.connect(host_uuid, new_host=False)

    async def _restart_agent(self, host: HostVO) -> None:
        """An owned agent did not answer a ping: start it again and reconnect."""
        try:
            await self._ensure_local_agent(host)
            await self.connect(host.uuid, new_host=False)
        except OperationError as exc:  # kept as the host's problem; tried at the next ping
            log.warning("the agent of host %s cannot be started: %s", host.name, exc.error)

    # -- API -------------------------------------------------------------------------------

    @handles(AddKVMHost)
    async def add_kvm_host(self, msg: AddKVMHost) -> dict[str, Any]:
        local = is_local(msg.management_ip)
        if not msg.agent_token and not local:
            raise argerr(
                f"agentToken is needed for the remote host {msg.management_ip} "
                "(it is in the agent's data dir, file agent.token)"
            )
        port = msg.agent_port or (free_port() if local else kvm.AGENT_PORT)
        host_uuid = await self._create_row(msg, "KVM", msg.management_ip, port, msg.agent_token)
        return await self._start_and_connect(host_uuid, bool(msg.agent_token))

    @handles(AddSimulatorHost)
    async def add_simulator_host(self, msg: AddSimulatorHost) -> dict[str, Any]:
        port = free_port()
        host_uuid = await self._create_row(msg, "Simulator", "127.0.0.1", port, "")
        self._local[host_uuid] = self._simulator_agent(
            host_uuid, port, msg.cpu_num, msg.memory_size
        )
        return await self._start_and_connect(host_uuid, False)

    async def _start_and_connect(self, host_uuid: str, has_token: bool) -> dict[str, Any]:
        """A new host's row is made: start its agent if this node owns it, connect.  A
        failure leaves nothing: no row, no tags, no agent."""
        try:
            if not has_token:
                await self._ensure_local_agent(
                    await self.node.db.run(lambda s: _detached(s, host_uuid))
                )
            return await self.connect(host_uuid, new_host=True)
        except BaseException:
            await self._forget(host_uuid)
            raise

    async def _create_row(self, msg: Any, hypervisor: str, ip: str, port: int, token: str) -> str:
        tags = self.node.plugin(TagPlugin)

        def create(session: Session) -> str:
            cluster = session.get(ClusterVO, msg.cluster_uuid)
            assert cluster is not None  # the bus checked the uuid
            if cluster.hypervisor_type != hypervisor:
                raise argerr(
                    f"cluster {cluster.name} is a {cluster.hypervisor_type} cluster; "
                    f"a {hypervisor} host cannot join it"
                )
            clash = session.scalars(
                select(HostVO).where(HostVO.management_ip == ip, HostVO.agent_port == port)
            ).first()
            if clash is not None:
                raise argerr(f"host {clash.name} already uses the agent at {ip}:{port}")
            host = HostVO(
                name=msg.name,
                description=msg.description,
                zone_uuid=cluster.zone_uuid,
                cluster_uuid=cluster.uuid,
                management_ip=ip,
                agent_port=port,
                agent_token=token,
                hypervisor_type=hypervisor,
                status="Connecting",
            )
            session.add(host)
            session.flush()
            tags.create_tags_from_message(session, msg, HostVO.resource_type, host.uuid)
            return host.uuid

        return await self.node.db.run(create)

    async def _forget(self, host_uuid: str) -> None:
        """Remove every trace of a host: row, tags, agent client, simulator process."""

        def delete(session: Session) -> None:
            host = session.get(HostVO, host_uuid)
            if host is not None:
                session.delete(host)
            delete_all_tags(session, [host_uuid])

        await self.node.db.run(delete)
        self._failures.pop(host_uuid, None)
        self._problems.pop(host_uuid, None)
        self._agent_locks.pop(host_uuid, None)
        client = self._agents.pop(host_uuid, None)
        if client is not None:
            await client.close()
        agent = self._local.pop(host_uuid, None)
        if agent is not None:
            await asyncio.to_thread(agent.stop)

    @handles(ReconnectHost)
    async def reconnect(self, msg: ReconnectHost) -> dict[str, Any]:
        await self._ensure_local_agent(await self.node.db.run(lambda s: _detached(s, msg.uuid)))
        return await self.connect(msg.uuid, new_host=False)

    @handles(DeleteHost)
    async def delete(self, msg: DeleteHost) -> None:
        def check(session: Session) -> None:
            vms = session.scalar(
                select(func.count())
                .select_from(VmInstanceVO)
                .where(VmInstanceVO.host_uuid == msg.uuid)
            )
            if vms:
                raise operr(
                    f"host[uuid:{msg.uuid}] still runs {vms} VM(s); stop or migrate them first"
                )

        await self.node.db.run(check)
        await self._forget(msg.uuid)


def _reason(exc: OperationError) -> str:
    """An error as one line for a status view: what failed, and its details."""
    error = exc.error
    text = error.description
    if error.details:
        text += f" ({error.details})"
    return text


def _detached(session: Session, uuid: str) -> HostVO:
    host = session.get(HostVO, uuid)
    if host is None:
        raise not_found("HostVO", uuid)
    session.expunge(host)
    return host
