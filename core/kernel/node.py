"""The management node: one process that owns a data dir and runs every service.

Start-up: take the data dir's lock (one node per data dir) -> open the
database and migrate it -> load the plugins -> register their services and
interceptors -> build every declared flow chain (so a typo in config.toml
stops start-up) -> start the components in order -> wait for their start-up
work to settle (every host Connected or Disconnected with a reason) -> serve
the local socket.  The node is ready once its socket is there.  Any failure
undoes what was done so far, in reverse.

Stop: the socket goes first (no new calls), the calls under way get
``STOP_GRACE`` seconds to finish, then are cancelled (their flow chains roll
back) and get ``ROLLBACK_GRACE`` more; then the components stop in reverse.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from core.kernel.api import ApiMessage, ApiReply
from core.kernel.api_params import ApiParameterExtensionPoint
from core.kernel.bus import ApiBus
from core.kernel.chains import ChainCatalog, ChainConfigError, ChainTraits, FlowChainContributor
from core.kernel.data_dir import (
    SOCKET_NAME,
    DataDirLock,
    NodeError,
    prepare_data_dir,
)
from core.kernel.db import Database
from core.kernel.event_json import DEFAULT_MAX_QUEUED, EventQueue
from core.kernel.events import CanonicalEvent, EventBus
from core.kernel.extensions import (
    AfterRecoveryExtensionPoint,
    Component,
    ExtensionRegistry,
    PluginError,
    ReadinessCheck,
)
from core.kernel.flow import ROLLBACK_HANDED_OVER_PATH, FlowChain
from core.kernel.flow_data import FlowData
from core.kernel.flow_journal import SqlFlowJournal
from core.kernel.flow_recovery import Recovered, recover_interrupted
from core.kernel.local_api import LocalApiRouteProvider, LocalApiServer
from core.kernel.properties import Properties
from core.kernel.rest import RestFacade
from core.kernel.service import GlobalApiInterceptor, Service

log = logging.getLogger(__name__)
T = TypeVar("T")
SETTLE_TIMEOUT = 180.0
"""Seconds start-up waits for start-up work to settle (a host's first connect may run its
agent's acceleration probe and its routers' re-sync)."""
STOP_GRACE = 30.0
"""Seconds a stopping node lets the calls under way finish before it cancels them."""
ROLLBACK_GRACE = 30.0
"""Seconds cancelled calls get to roll back before the node stops regardless."""


class ManagementNode:
    def __init__(
        self,
        props: Properties,
        *,
        plugin_classes: Mapping[str, type] | None = None,
        serve_socket: bool = True,
    ) -> None:
        """``plugin_classes`` replaces entry-point discovery (tests use it)."""
        self.props = props
        self.data_dir: Path = props.data_dir
        self.events = EventBus()
        self.registry = ExtensionRegistry()
        self._db: Database | None = None
        self.flow_journal: SqlFlowJournal | None = None
        self.recovered: list[Recovered] = []
        """What the last start did with the chain runs a crash had interrupted."""
        self.interrupted_resources: set[str] = set()
        """Resources of runs in the flow journal that no operation is running: those a
        crash interrupted, while start-up has not taken them up, and those whose rollback
        waits for a GC job.  A host's sync leaves them alone."""
        self.bus: ApiBus | None = None
        self.rest = RestFacade(props["rest.host"], props["rest.port"])
        self._plugin_classes = plugin_classes
        self._serve_socket = serve_socket
        self._lock = DataDirLock(self.data_dir)
        self._socket: LocalApiServer | None = None
        self._started: list[Component] = []
        self.chains = ChainCatalog()
        self.running = False
        self.started_at = 0.0
        """When the node became ready (time.time()); 0 until then."""
        self._event_queues: set[EventQueue] = set()

    @property
    def socket_path(self) -> Path:
        return self.data_dir / SOCKET_NAME

    # -- life cycle -----------------------------------------------------------

    async def start(self) -> None:
        try:
            prepare_data_dir(self.data_dir)
        except OSError as exc:
            raise NodeError(f"cannot create data dir {self.data_dir}: {exc}") from exc
        self._lock.acquire()
        try:
            await self._start_locked()
        except BaseException:
            await self._teardown()
            raise
        self.running = True
        # What start-up made lives as long as the node: keep it out of every later full
        # garbage collection (they would otherwise pause API calls for tens of ms).
        gc.freeze()
        log.info("management node started on %s", self.data_dir)

    @property
    def db(self) -> Database:
        """The node's database, from its start to its stop."""
        if self._db is None:
            raise RuntimeError("the management node's database is open only while it runs")
        return self._db

    async def _start_locked(self) -> None:
        self._db = Database(self.props.db_url)
        self.flow_journal = SqlFlowJournal(self._db)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self._db.migrate)
        except Exception as exc:
            raise NodeError(
                f"cannot open or migrate the database {self.props.db_url}: {exc}"
            ) from exc
        self.bus = ApiBus(self.db, self.props["api.timeout"], self.events)

        classes = self._plugin_classes
        if classes is None:
            classes = self.registry.discover(
                self.props["plugins.enabled"], self.props["plugins.disabled"]
            )
        self.registry.load(dict(classes), self)
        for service in self.registry.extensions(Service):
            try:
                self.bus.register_service(service)
            except ValueError as exc:
                raise PluginError(str(exc)) from exc
        for interceptor in self.registry.extensions(GlobalApiInterceptor):
            self.bus.add_global_interceptor(interceptor)
        for contribution in self.registry.extensions(ApiParameterExtensionPoint):
            try:
                self.bus.add_parameter_extension(contribution)
            except ValueError as exc:
                raise PluginError(str(exc)) from exc
        insertions = [
            ins
            for contributor in self.registry.extensions(FlowChainContributor)
            for ins in contributor.flow_insertions()
        ]
        try:
            self.chains.build_all(
                self.props["chains"], insertions, str(self.props.source or "config.toml")
            )
        except ChainConfigError as exc:
            raise NodeError(str(exc)) from exc

        await self.rest.start()
        # What interrupted runs are about waits for recovery: a host's sync leaves it alone.
        self.interrupted_resources = {
            run.resource_uuid for run in await self.flow_journal.runs() if run.resource_uuid
        }
        for component in self.registry.extensions(Component):
            await component.start()
            self._started.append(component)
        for check in self.registry.extensions(ReadinessCheck):
            await check.settled(SETTLE_TIMEOUT)
        # Before any call is served: what a crash interrupted is rolled back (or run on).
        self.recovered = await recover_interrupted(self)
        self.interrupted_resources = {
            run.resource_uuid for run in await self.flow_journal.runs() if run.resource_uuid
        }  # left: runs whose rollback waits for a GC job
        self.events.subscribe(ROLLBACK_HANDED_OVER_PATH, self._rollback_handed_over)
        for ext in self.registry.extensions(AfterRecoveryExtensionPoint):
            await ext.after_recovery()
        self.started_at = time.time()
        if self._serve_socket:
            self._socket = LocalApiServer(
                self.bus,
                self.socket_path,
                self.events,
                self.registry.extensions(LocalApiRouteProvider),
            )
            await self._socket.start()

    def _rollback_handed_over(self, event: CanonicalEvent) -> None:
        uuid = event.data.get("resourceUuid")
        if uuid:
            self.interrupted_resources.add(uuid)

    async def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        if self._socket is not None:  # no new calls; then wait for those under way
            await self._socket.stop()
            self._socket = None
        if self.bus is not None:
            await self.bus.drain(STOP_GRACE, ROLLBACK_GRACE)
        await self._teardown()
        for queue in list(self._event_queues):  # their readers get what is queued, then the end
            queue.end()
        log.info("management node stopped")

    async def _teardown(self) -> None:
        if self._socket is not None:
            await self._socket.stop()
            self._socket = None
        while self._started:
            component = self._started.pop()
            try:
                await component.stop()
            except Exception:
                log.exception("component %s failed to stop", type(component).__qualname__)
        await self.rest.stop()
        if self._db is not None:
            self._db.close()
            self._db = None
        self._lock.release()

    async def __aenter__(self) -> ManagementNode:
        await self.start()
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.stop()

    # -- API ------------------------------------------------------------------

    async def call(
        self,
        api: str | ApiMessage,
        params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> ApiReply:
        """Call an API by name with raw parameters, or with a message object."""
        assert self.bus is not None, "the node is not started"
        if isinstance(api, ApiMessage):
            return await self.bus.call(api, timeout)
        return await self.bus.call_by_name(api, params or {}, timeout)

    def event_queue(self, patterns: Sequence[str], maxsize: int = DEFAULT_MAX_QUEUED) -> EventQueue:
        """A client's subscription to the node's events (JSON-able data, bounded; see
        :mod:`core.kernel.event_json`); it ends when the node stops."""
        queue = EventQueue(
            self.events, patterns, maxsize=maxsize, on_end=self._event_queues.discard
        )
        if not self.running:
            queue.end()
        else:
            self._event_queues.add(queue)
        return queue

    def plugin(self, cls: type[T]) -> T:
        return self.registry.get(cls)

    # -- flow chains declared in configuration ----------------------------------

    def declare_chain(
        self,
        name: str,
        default_flows: Sequence[str],
        data: type[FlowData] | None = None,
        *,
        resumable: bool = False,
    ) -> None:
        """Declare a chain a service runs (call from a plugin's __init__).

        With ``data`` (its FlowData class) the chain is durable: every run is written to
        the flow journal as it goes and taken up at the next start if the node dies
        (rolled back, or run on if ``resumable``).
        """
        try:
            self.chains.declare(name, default_flows, ChainTraits(data, resumable))
        except ChainConfigError as exc:
            raise PluginError(str(exc)) from exc

    def chain(self, name: str) -> FlowChain:
        """A new run of a declared chain, tracing to the node's event bus."""
        return self.chains.chain(name, self.events, self.flow_journal)

    def new_chain(self, name: str) -> FlowChain:
        """An ad-hoc chain (flows added in code with ``then``), tracing to the event bus."""
        return FlowChain(name, events=self.events)
