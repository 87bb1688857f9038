"""The reconciler: the last net under rollbacks and GC jobs (ZStack's host reconcilers).

When the node has started, then every ``reconcile.interval`` seconds (0: only at start),
each Connected host's agent lists what of this lab it has (contracts.kvm.LAB_INVENTORY:
domains, disks under primary storage, taps, bridges, router namespaces and veths, host
NAT rules, agent and dnsmasq processes), and the node compares that with the database
(core.reconcile.owners).  An object no row owns is an orphan: first seen, it is recorded
(``host_orphan``, so the grace period survives restarts; ``QueryHostOrphan`` lists them)
and :data:`FOUND_EVENT` is published; once it has been an orphan at every comparison for
``reconcile.orphanGracePeriod`` seconds it is removed (contracts.kvm.LAB_REMOVE, which
refuses anything not of this lab) and :data:`REMOVED_EVENT` is published.  With ``Never``
orphans are kept and reported.  An object owned again (or gone) is forgotten.

A host's listing and comparison are quiet; when they find a new orphan or one whose grace
period has ended, the background chain ``reconcileHost`` runs (in the operations log):
``ReconcileReportOrphansFlow``, ``ReconcileRemoveOrphansFlow``; the latter runs one
nested chain ``reconcileRemoveOrphan`` per removal, whose one step is named after the
object (``remove domain zsl-…``).  So the operations log holds what the reconciler found
and did, and a clean lab's log is not filled with its looks.

Races: an object a running chain is making has no row yet for a moment (a tap or domain
during createVm, a namespace during createVirtualRouter).  The grace period (15 minutes
by default, longer than any operation) covers that, a VM's or router's uuid in the
database in any state owns everything that names it, and ownership is read again just
before each removal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import events as ev
from contracts import kvm
from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.config.plugin import UPDATE_EVENT, GlobalConfigPlugin
from core.host.models import HostVO
from core.host.plugin import HostPlugin
from core.kernel.db import utcnow
from core.kernel.errors import operr
from core.kernel.extensions import Component, Plugin
from core.kernel.flow import NoRollbackFlow
from core.kernel.operation import context_of
from core.kernel.service import Service
from core.reconcile import global_config, tracking
from core.reconcile.api import QueryHostOrphan
from core.reconcile.owners import load_owners, orphans, storage_paths
from core.reconcile.tracking import Orphan

log = logging.getLogger(__name__)

CHAIN = "reconcileHost"
REMOVE_CHAIN = "reconcileRemoveOrphan"
FOUND_EVENT = ev.OrphanFound.PATH
"""Data: ``{hostUuid, kind, name, ref, detail, firstSeen}``, when an orphan is first seen."""
REMOVED_EVENT = ev.OrphanRemoved.PATH
"""Data: ``{hostUuid, kind, name, ref, detail, firstSeen}``, once the orphan is removed."""
INVENTORY_TIMEOUT = 60.0
REMOVE_TIMEOUT = 120.0
READY_POLL = 0.2


@dataclass
class HostRun:
    """One comparison of one host: what the steps of its chain hand each other (kept out
    of the chain's data, so the chain runs without any)."""

    host_uuid: str
    now: datetime = field(default_factory=utcnow)
    paths: list[str] = field(default_factory=list)
    objects: list[kvm.HostObjectTO] = field(default_factory=list)
    orphans: list[Orphan] = field(default_factory=list)
    due: list[Orphan] = field(default_factory=list)
    removed: list[Orphan] = field(default_factory=list)


class _RunFlow(NoRollbackFlow):
    """A step of one host's comparison (nothing to undo: it only reads, or removes what
    nothing owns)."""

    def __init__(self, plugin: ReconcilePlugin, run: HostRun) -> None:
        self.plugin = plugin
        self.state = run


class ReconcileReportOrphansFlow(_RunFlow):
    """Reports the orphans seen for the first time (the log, :data:`FOUND_EVENT`)."""

    def skip(self, data: dict[str, Any]) -> bool:
        return not any(o.new for o in self.state.orphans)

    async def run(self, data: dict[str, Any]) -> None:
        run = self.state
        for orphan in run.orphans:
            if orphan.new:
                log.warning(
                    "host %s has an orphan %s %s (%s)",
                    run.host_uuid,
                    orphan.kind,
                    orphan.name,
                    orphan.detail or "no owner in the database",
                )
                self.plugin.publish(FOUND_EVENT, run.host_uuid, orphan)


class ReconcileRemoveOrphansFlow(_RunFlow):
    def skip(self, data: dict[str, Any]) -> bool:
        return not self.state.due

    async def run(self, data: dict[str, Any]) -> None:
        run, plugin = self.state, self.plugin
        # Read ownership again: a row may have come since the comparison.
        owners = await plugin.node.db.run(lambda s: load_owners(s, run.host_uuid))
        failed = []
        order = {kind: i for i, kind in enumerate(kvm.LAB_OBJECT_KINDS)}
        for orphan in sorted(run.due, key=lambda o: order.get(o.kind, len(order))):
            if owners.owns(orphan):
                continue
            step = RemoveOrphanFlow(plugin, run, orphan)
            outcome = await plugin.node.new_chain(REMOVE_CHAIN).then(step).start()
            if outcome.error is not None:
                failed.append(f"{orphan.kind} {orphan.name}: {outcome.error.description}")
        if failed:
            raise operr(
                f"cannot remove {len(failed)} orphan(s) of host {run.host_uuid}; "
                "the next comparison tries again",
                "; ".join(failed),
            )


class RemoveOrphanFlow(NoRollbackFlow):
    """Removes one orphan; the step is named after it, so the operations log shows it."""

    def __init__(self, plugin: ReconcilePlugin, run: HostRun, orphan: Orphan) -> None:
        self.plugin = plugin
        self.state = run
        self.orphan = orphan
        self.what = f"{orphan.kind} {orphan.name}"
        # Flow.name is declared a ClassVar, but the chain reads it from the flow: a step
        # named after its object is what the operations log shows.
        self.name = f"remove {self.what}"  # type: ignore[misc]

    async def run(self, data: dict[str, Any]) -> None:
        run, plugin, orphan = self.state, self.plugin, self.orphan
        agent = await plugin.node.plugin(HostPlugin).agent_of(run.host_uuid)
        cmd = kvm.LabRemoveCmd(
            objects=[kvm.ObjectRefTO(kind=orphan.kind, name=orphan.name)], storage_paths=run.paths
        )
        answer = await agent.send(cmd, timeout=REMOVE_TIMEOUT)
        if answer.failures:
            raise operr(f"cannot remove {self.what}", answer.failures[0].error)
        await plugin.node.db.run(
            lambda s: tracking.forget(s, run.host_uuid, orphan.kind, orphan.name)
        )
        if answer.removed:
            run.removed.append(orphan)
            log.warning("removed the orphan %s on host %s", self.what, run.host_uuid)
            plugin.publish(REMOVED_EVENT, run.host_uuid, orphan)
        else:  # refused: gone meanwhile, or not this lab's (then never ours to remove)
            for refused in answer.refused:
                log.info("orphan %s not removed: %s", self.what, refused.error)


class ReconcilePlugin(Plugin, GlobalConfigProvider, Service, Component):
    implements = (GlobalConfigProvider, Service, Component)
    order = -100  # starts after the services whose objects it compares; stops before them
    service_id = "reconcile"
    queries: ClassVar[tuple[type, ...]] = (QueryHostOrphan,)

    def __init__(self, node: Any) -> None:
        super().__init__(node)
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._loop(), name="reconciler", context=context_of(None)
        )

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- settings ---------------------------------------------------------------------
    def _config(self, definition: GlobalConfigDef) -> Any:
        configs = self.node.plugin(GlobalConfigPlugin)
        return configs.value(global_config.CATEGORY, definition.name)

    def grace(self) -> float | None:
        return global_config.grace_seconds(self._config(global_config.ORPHAN_GRACE_PERIOD))

    # -- running ----------------------------------------------------------------------
    async def _loop(self) -> None:
        while not self.node.running:  # after start-up: hosts connected, chains recovered
            await asyncio.sleep(READY_POLL)
        wake = asyncio.Event()
        sub = self.node.events.subscribe(
            UPDATE_EVENT.format(category=global_config.CATEGORY, name="interval"),
            lambda _event: wake.set(),
        )
        try:
            while True:
                try:
                    await self.reconcile_all()
                except Exception:
                    log.exception("the reconciler failed; it runs again at its next round")
                while True:  # a new interval applies at once: the wait starts again
                    interval = self._config(global_config.INTERVAL)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(wake.wait(), interval or None)
                    if not wake.is_set():
                        break
                    wake.clear()
        finally:
            sub.cancel()

    async def reconcile_all(self) -> dict[str, HostRun]:
        """Compare every Connected host with the database (one comparison at a time)."""

        def connected(session: Session) -> list[str]:
            tracking.forget_gone_hosts(session)
            return list(session.scalars(select(HostVO.uuid).where(HostVO.status == "Connected")))

        hosts = await self.node.db.run(connected)
        runs = {}
        for host_uuid in hosts:
            runs[host_uuid] = await self.reconcile_host(host_uuid)
        return runs

    async def reconcile_host(self, host_uuid: str) -> HostRun:
        """One comparison of one host.  The listing and the comparison are quiet; when they
        find a new orphan or one whose grace period has ended, the background chain
        ``reconcileHost`` reports and removes (so the operations log holds what the
        reconciler did, not every look it took)."""
        async with self._lock:
            run = HostRun(host_uuid)
            try:
                await self._compare(run)
            except Exception as exc:
                log.warning("cannot compare host %s with the database: %s", host_uuid, exc)
                return run
            if not run.due and not any(o.new for o in run.orphans):
                return run
            chain = self.node.new_chain(CHAIN)
            chain.then(ReconcileReportOrphansFlow(self, run))
            chain.then(ReconcileRemoveOrphansFlow(self, run))
            outcome = await chain.start()
            if outcome.error is not None:
                log.warning("reconciling host %s failed: %s", host_uuid, outcome.error)
            return run

    async def _compare(self, run: HostRun) -> None:
        """List the host's objects of this lab; record the orphans among them."""
        db = self.node.db
        run.paths = await db.run(lambda s: storage_paths(s, run.host_uuid))
        agent = await self.node.plugin(HostPlugin).agent_of(run.host_uuid)
        cmd = kvm.LabInventoryCmd(storage_paths=run.paths)
        run.objects = (await agent.send(cmd, timeout=INVENTORY_TIMEOUT)).objects
        grace = self.grace()

        def compare(session: Session) -> tuple[list[Orphan], list[Orphan]]:
            found = orphans(run.objects, load_owners(session, run.host_uuid))
            tracked = tracking.track(session, run.host_uuid, found, run.now)
            return tracked, tracking.due(tracked, run.now, grace)

        run.orphans, run.due = await db.run(compare)

    def publish(self, path: str, host_uuid: str, orphan: Orphan) -> None:
        model = ev.OrphanFound if path == FOUND_EVENT else ev.OrphanRemoved
        event = model(
            host_uuid=host_uuid,
            kind=orphan.kind,
            name=orphan.name,
            ref=orphan.ref,
            detail=orphan.detail,
            first_seen=orphan.first_seen.isoformat(),
        )
        self.node.events.publish(event.PATH, event.to_json())
