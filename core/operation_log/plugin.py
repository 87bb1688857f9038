"""The operations journal as a plugin: live records, a table of finished ones, its APIs.

Finished operations are written by one background writer in batches, so an
operation never waits for (nor fails because of) its own journal entry; a
failed write is logged and the records are lost.  ``QueryOperationLog`` first
waits for the writes of the operations finished before it, so a caller sees
its own finished calls.  Running operations live in memory only
(``GetRunningOperations``).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from contracts.events import OperationUpdate
from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.config.plugin import GlobalConfigPlugin
from core.kernel.api import QueryResult
from core.kernel.events import CanonicalEvent
from core.kernel.extensions import Component, Plugin
from core.kernel.flow_recovery import ROLLBACK_FINISHED_PATH
from core.kernel.operation import context_of
from core.kernel.query import run_query
from core.kernel.service import Service, handles
from core.operation_log import global_config
from core.operation_log.api import GetRunningOperations, QueryOperationLog
from core.operation_log.journal import OPERATION_UPDATE_PATH, OperationJournal, Record
from core.operation_log.store import insert_and_prune, mark_rolled_back

log = logging.getLogger(__name__)


class OperationLogPlugin(Plugin, GlobalConfigProvider, Service, Component):
    implements = (GlobalConfigProvider, Service, Component)
    order = 900  # stops after the services whose operations it records
    service_id = "operationLog"

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        # Listening from here, before any component starts, catches start-up's operations.
        self.journal = OperationJournal(node.events, self._keep)
        self._pending: list[Record] = []
        self._writer: asyncio.Task[None] | None = None
        self._queued = 0
        self._written = 0
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._stopped = False
        self._finished_rollbacks = node.events.subscribe(
            ROLLBACK_FINISHED_PATH, self._on_rollback_finished
        )
        self._updates: set[asyncio.Task[None]] = set()

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._stopped = True
        self.journal.close()
        self._finished_rollbacks.cancel()
        if self._updates:
            await asyncio.gather(*self._updates, return_exceptions=True)
        if self._writer is not None:
            await asyncio.shield(self._writer)

    # -- API ----------------------------------------------------------------------------

    @handles(QueryOperationLog)
    async def query(self, msg: QueryOperationLog) -> QueryResult:
        await self.written()
        return await self.node.db.run(lambda session: run_query(session, msg))

    @handles(GetRunningOperations)
    async def running(self, msg: GetRunningOperations) -> list[dict[str, Any]]:
        return self.journal.running(msg.resource_uuid or None)

    # -- a handed-over rollback finished later ------------------------------------------

    def _on_rollback_finished(self, event: CanonicalEvent) -> None:
        operation = event.data.get("operationId")
        if not operation or self._stopped:
            return
        task = asyncio.get_running_loop().create_task(
            self._rolled_back(operation), context=context_of(None)
        )
        self._updates.add(task)
        task.add_done_callback(self._updates.discard)

    async def _rolled_back(self, operation_id: str) -> None:
        """The GC job of an operation kept as RollbackFailed finished its rollback: the
        operation is RolledBack now (its error still says what failed and why)."""
        await self.written()  # its RollbackFailed record may still be on its way
        try:
            record = await self.node.db.run_core(
                functools.partial(mark_rolled_back, uuid=operation_id)
            )
        except Exception:
            log.exception("cannot mark operation %s rolled back", operation_id)
            return
        if record is not None and self.node.events.has_subscribers(OPERATION_UPDATE_PATH):
            update = OperationUpdate.model_validate(record)
            self.node.events.publish(OPERATION_UPDATE_PATH, update.to_json())

    # -- writing ------------------------------------------------------------------------

    async def written(self) -> None:
        """Wait until every operation finished so far is in the table (or failed to be)."""
        if self._writer is None:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((self._queued, waiter))
        await waiter

    def _keep(self, record: Record) -> None:
        if self._stopped:
            log.warning("operation %s finished after the journal stopped", record["uuid"])
            return
        self._pending.append(record)
        self._queued += 1
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(
                self._write(), name="operation-log-writer", context=context_of(None)
            )

    async def _write(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                keep = self._retention()
                try:
                    await self.node.db.run_core(
                        functools.partial(insert_and_prune, records=batch, keep=keep)
                    )
                except Exception:
                    log.exception("cannot write %d operation(s) to the operation log", len(batch))
                self._written += len(batch)
                self._wake(lambda target: target <= self._written)
        finally:
            self._writer = None
            self._wake(lambda _target: True)

    def _wake(self, done: Callable[[int], bool]) -> None:
        waiting = []
        for target, waiter in self._waiters:
            if not done(target):
                waiting.append((target, waiter))
            elif not waiter.done():
                waiter.set_result(None)
        self._waiters = waiting

    def _retention(self) -> int:
        try:
            configs = self.node.plugin(GlobalConfigPlugin)
            return int(configs.value(global_config.CATEGORY, global_config.RETENTION.name))
        except Exception:  # not started yet (operations of start-up) or not loaded
            return int(global_config.RETENTION.default)
