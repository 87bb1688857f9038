"""The backend over libvirt-python (``qemu:///system`` on a real host).

Threads: libvirt's default event implementation runs in one daemon thread for the
whole process (registered before any connection is opened, as libvirt
requires); its callbacks only hand events to the asyncio loop with
``call_soon_threadsafe``.  Every other libvirt call runs in a small thread pool,
so the event loop never blocks.  Only domains named ``zsl-<vmUuid>`` are looked
at, changed or reported; anything else on the host is invisible to the agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import libvirt
import libvirt_qemu

from agent import images, volume_chain
from agent.acceleration import AccelerationProbe
from agent.backend import (
    Backend,
    Capacity,
    DataVolumeSpec,
    HostFacts,
    SnapshotResult,
    VmConsole,
    VmSpec,
    VolumeOp,
    domain_name,
    vm_uuid_of,
)
from agent.console import ConsoleStream
from agent.domain_xml import (
    DOMAIN_TYPES,
    build_domain_xml,
    console_of,
    data_disk_xml,
    disk_element,
    disks_of,
    snapshot_xml,
)
from agent.host_facts import format_libvirt_version, read_cpuinfo, read_meminfo
from agent.lab import default_lab_dir
from agent.libvirt_console import LibvirtConsole
from agent.network.host import HostNetwork
from agent.storage import LiveDisk, LocalFileStorage
from agentkit.errors import AgentError, ArgumentError

if TYPE_CHECKING:
    from agent.lab_inventory import HostObject, Removal

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_URI = "qemu:///system"
KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3
GRACE_POLL = 0.2
JOB_POLL = 0.2
BLOCK_JOB_TIMEOUT = 3600.0
"""How long a live block pull (VOLUME_REBASE, VOLUME_SNAPSHOT ``full``) may take."""
SNAPSHOT_FLAGS = (
    libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY
    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA
    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT
    | libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC
)

# -- the process-wide libvirt event loop -----------------------------------------
_events_lock = threading.Lock()
_events_started = False


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation and run it (once per process)."""
    global _events_started
    with _events_lock:
        if _events_started:
            return
        # libvirt prints every error to stderr unless a handler is set; ours are raised.
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=_run_events, name="libvirt-events", daemon=True).start()
        _events_started = True


def _run_events() -> None:
    while True:
        try:
            if libvirt.virEventRunDefaultImpl() < 0:
                time.sleep(0.1)
        except Exception:
            log.exception("libvirt event loop iteration failed")
            time.sleep(1)


# -- states ----------------------------------------------------------------------
_EVENT_STATES = {
    libvirt.VIR_DOMAIN_EVENT_STARTED: "Running",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "Running",
    libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "Paused",
    libvirt.VIR_DOMAIN_EVENT_STOPPED: "Stopped",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: "Stopped",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "Crashed",
}


def event_state(event: int, detail: int) -> str | None:
    """The ZStack state a lifecycle event means, or None for events that are no change."""
    if event == libvirt.VIR_DOMAIN_EVENT_STOPPED and (
        detail == libvirt.VIR_DOMAIN_EVENT_STOPPED_CRASHED
    ):
        return "Crashed"
    return _EVENT_STATES.get(event)


def domain_state(state: int, reason: int) -> str:
    """The ZStack state of ``virDomain.state()``."""
    if state in (
        libvirt.VIR_DOMAIN_RUNNING,
        libvirt.VIR_DOMAIN_BLOCKED,
        libvirt.VIR_DOMAIN_SHUTDOWN,  # still running while it shuts down
    ):
        return "Running"
    if state in (libvirt.VIR_DOMAIN_PAUSED, libvirt.VIR_DOMAIN_PMSUSPENDED):
        return "Paused"
    if state == libvirt.VIR_DOMAIN_SHUTOFF:
        return "Crashed" if reason == libvirt.VIR_DOMAIN_SHUTOFF_CRASHED else "Stopped"
    if state == libvirt.VIR_DOMAIN_CRASHED:
        return "Crashed"
    return "Unknown"


def _state_of(dom: libvirt.virDomain) -> str:
    state, reason = dom.state()
    return domain_state(state, reason)


def _message(exc: libvirt.libvirtError) -> str:
    return exc.get_error_message() or str(exc)


def _is(exc: libvirt.libvirtError, *codes: int) -> bool:
    return exc.get_error_code() in codes


def power_off(dom: libvirt.virDomain) -> None:
    """Pull the plug (SIGTERM, then SIGKILL if QEMU does not go); fine if it is off."""
    try:
        dom.destroy()
    except libvirt.libvirtError as exc:
        if dom.isActive():
            raise AgentError(f"cannot power off {dom.name()}: {_message(exc)}") from None


def remove_domain(dom: libvirt.virDomain) -> None:
    """Power the domain off and undefine it with its metadata; fine if it is gone."""
    try:
        if dom.isActive():
            power_off(dom)
    except libvirt.libvirtError as exc:
        if _is(exc, libvirt.VIR_ERR_NO_DOMAIN):
            return
        raise
    flags = (
        libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
        | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
        | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
    )
    try:
        dom.undefineFlags(flags)
    except libvirt.libvirtError as exc:
        if _is(exc, libvirt.VIR_ERR_NO_DOMAIN):
            return
        if not _is(exc, libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise AgentError(f"cannot undefine {dom.name()}: {_message(exc)}") from None
        # A driver without NVRAM/checkpoint support (the test driver): the basic flags.
        dom.undefineFlags(
            libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
            | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
        )


def _affect(dom: libvirt.virDomain, target: str, plugging: bool) -> int:
    """Hot-plug flags: the running domain and, for a persistent one, its definition too
    (VM_REBOOT starts the domain again from it): a disk plugged in is added there unless
    it is there already, one unplugged is removed from there if it is there."""
    flags = libvirt.VIR_DOMAIN_AFFECT_LIVE
    if dom.isPersistent():
        defined = target in disks_of(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        if defined != plugging:
            flags |= libvirt.VIR_DOMAIN_AFFECT_CONFIG
    return flags


class LibvirtBackend(LocalFileStorage, Backend):
    hypervisor_type = "KVM"

    def __init__(
        self,
        uri: str = DEFAULT_URI,
        probe: AccelerationProbe | None = None,
        max_threads: int = 8,
        data_dir: Path | None = None,
    ) -> None:
        super().__init__()
        self.uri = uri
        self.network = HostNetwork(data_dir)
        self.probe = probe if probe is not None else AccelerationProbe()
        self._pool = ThreadPoolExecutor(max_threads, thread_name_prefix="libvirt")
        self._conn: libvirt.virConnect | None = None
        self._conn_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reconnecting: asyncio.Task[None] | None = None
        self._reported: dict[str, str] = {}
        self._closing = False

    # -- lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        ensure_event_loop()
        try:
            await self._call(self._ensure_conn)
        except AgentError as exc:
            log.warning("%s; will keep trying", exc)
            self._schedule_reconnect()
        # Probe now so the first host connect does not wait for it.
        self._spawn(self.probe.result())

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        await self.consoles.close_all()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._call(self._close_conn)
        self._pool.shutdown(wait=False, cancel_futures=True)
        await self.network.close()  # appliances outlive the agent: nothing is stopped

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking libvirt call in the pool; stray libvirt errors become AgentErrors."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, functools.partial(fn, *args))
        except libvirt.libvirtError as exc:
            raise AgentError(f"libvirt ({self.uri}): {_message(exc)}") from None

    # -- the connection (these run in pool threads) -----------------------------
    def _ensure_conn(self) -> libvirt.virConnect:
        with self._conn_lock:
            conn = self._conn
            if conn is not None:
                try:
                    if conn.isAlive():
                        return conn
                except libvirt.libvirtError:
                    pass
                log.warning("the libvirt connection to %s is gone; reconnecting", self.uri)
                self._conn = None
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
            try:
                conn = libvirt.open(self.uri)
            except libvirt.libvirtError as exc:
                raise AgentError(
                    f"cannot connect to libvirt at {self.uri}: {_message(exc)}"
                ) from None
            # Not every driver has keepalive or close callbacks (the test driver has neither).
            with contextlib.suppress(libvirt.libvirtError):
                conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
            with contextlib.suppress(libvirt.libvirtError):
                conn.registerCloseCallback(self._closed_cb, None)
            conn.domainEventRegisterAny(
                None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle_cb, None
            )
            self._conn = conn
            log.info("connected to libvirt at %s", self.uri)
            return conn

    def _close_conn(self) -> None:
        with self._conn_lock:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(libvirt.libvirtError):
            conn.unregisterCloseCallback()
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()

    # -- libvirt callbacks (libvirt's event thread: hand over, nothing else) -----
    def _lifecycle_cb(
        self, _conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int, _o: Any
    ) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_lifecycle, dom.name(), event, detail)

    def _closed_cb(self, _conn: libvirt.virConnect, reason: int, _opaque: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._on_closed, reason)

    # -- on the event loop ------------------------------------------------------
    def _on_lifecycle(self, name: str, event: int, detail: int) -> None:
        vm_uuid = vm_uuid_of(name)
        if vm_uuid is None:
            return
        if event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
            self._reported.pop(vm_uuid, None)
            return
        state = event_state(event, detail)
        log.debug("domain %s: event %d/%d -> %s", name, event, detail, state)
        if state is not None:
            self._emit(vm_uuid, state)

    def _emit(self, vm_uuid: str, state: str) -> None:
        """Report a state unless it is the one last reported for this VM."""
        if self._reported.get(vm_uuid) == state:
            return
        self._reported[vm_uuid] = state
        self._report(vm_uuid, state)

    def _on_closed(self, reason: int) -> None:
        if not self._closing:
            log.warning("libvirt closed the connection to %s (reason %d)", self.uri, reason)
            self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._reconnecting is None or self._reconnecting.done():
            self._reconnecting = self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.5
        while not self._closing:
            try:
                await self._call(self._ensure_conn)
            except AgentError as exc:
                log.warning("%s; retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            # Events were lost while disconnected: report what changed meanwhile.
            for vm_uuid, state in (await self.vm_sync()).items():
                self._emit(vm_uuid, state)
            return

    # -- host ------------------------------------------------------------------
    async def connect(self, host_uuid: str, report_url: str) -> HostFacts:
        conn = await self._call(self._ensure_conn)
        lib_version, node, hostname = await self._call(
            lambda: (conn.getLibVersion(), conn.getInfo(), conn.getHostname())
        )
        qemu_img = await images.qemu_img_version()
        model, flags = await asyncio.to_thread(read_cpuinfo)
        total, _ = await self._memory(conn)
        probe = await self.probe.result()
        return HostFacts(
            hostname=hostname,
            libvirt_version=format_libvirt_version(lib_version),
            qemu_img_version=qemu_img,
            cpu_num=node[2],
            cpu_sockets=max(1, node[4] * node[5]),
            cpu_model_name=model or node[0],
            cpu_flags=flags,
            total_memory=total,
            acceleration=probe.acceleration,
            hypervisor_type=self.hypervisor_type,
        )

    async def ping(self) -> None:
        conn = await self._call(self._ensure_conn)
        await self._call(conn.getLibVersion)

    async def capacity(self) -> Capacity:
        conn = await self._call(self._ensure_conn)
        node = await self._call(conn.getInfo)
        total, used = await self._memory(conn)
        return Capacity(
            cpu_num=node[2], total_memory=total, used_memory=used, free_memory=total - used
        )

    async def _memory(self, conn: libvirt.virConnect) -> tuple[int, int]:
        """(total, used by host programs) in bytes: libvirt's node stats, else /proc/meminfo."""
        try:
            stats = await self._call(conn.getMemoryStats, libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
        except AgentError:
            info = await asyncio.to_thread(read_meminfo)
            total = info["MemTotal"]
            return total, total - info.get("MemAvailable", info.get("MemFree", 0))
        total = stats["total"] * 1024
        spare = sum(stats.get(k, 0) for k in ("free", "buffers", "cached")) * 1024
        return total, total - spare

    # -- VMs -------------------------------------------------------------------
    def _lookup(self, vm_uuid: str) -> libvirt.virDomain | None:
        conn = self._ensure_conn()
        try:
            return conn.lookupByName(domain_name(vm_uuid))
        except libvirt.libvirtError as exc:
            if _is(exc, libvirt.VIR_ERR_NO_DOMAIN):
                return None
            raise

    def _require(self, vm_uuid: str) -> libvirt.virDomain:
        dom = self._lookup(vm_uuid)
        if dom is None:
            raise AgentError(f"VM {vm_uuid} has no domain {domain_name(vm_uuid)} on this host")
        return dom

    async def vm_start(self, spec: VmSpec) -> str:
        acceleration = spec.acceleration or (await self.probe.result()).acceleration
        if acceleration not in DOMAIN_TYPES:
            raise ArgumentError(f"acceleration must be kvm or tcg, got {acceleration!r}")
        # QEMU follows the root volume's header: it must name only the project's files.
        await volume_chain.check_root_volume(spec.root_volume_path, spec.root_volume_format)
        for volume in spec.data_volumes:  # and every data volume's chain its storage's
            storage = volume_chain.storage_of_data_volume(volume.install_path)
            await volume_chain.read_chain(volume.install_path, storage, volume.format)
        return await self._call(self._start, spec, build_domain_xml(spec, acceleration))

    def _start(self, spec: VmSpec, xml: str) -> str:
        dom = self._lookup(spec.vm_uuid)
        if dom is not None and dom.isActive():
            return _state_of(dom)
        if spec.console_log_path:  # virtlogd makes the file, not its directory
            os.makedirs(os.path.dirname(spec.console_log_path), exist_ok=True)
        newly_defined = dom is None
        conn = self._ensure_conn()
        try:
            dom = conn.defineXML(xml)
        except libvirt.libvirtError as exc:
            raise AgentError(f"cannot define VM {spec.vm_uuid}: {_message(exc)}") from None
        try:
            dom.create()
        except libvirt.libvirtError as exc:
            if newly_defined:
                with contextlib.suppress(libvirt.libvirtError):
                    dom.undefine()
            raise AgentError(f"cannot start VM {spec.vm_uuid}: {_message(exc)}") from None
        return _state_of(dom)

    async def vm_stop(self, vm_uuid: str, stop_type: str, timeout: float) -> str:
        dom = await self._call(self._lookup, vm_uuid)
        if dom is None or not await self._call(dom.isActive):
            return "Stopped"
        if stop_type == "grace":
            if await self._graceful_shutdown(dom, timeout):
                return "Stopped"
            log.info("VM %s did not shut down within %gs; destroying it", vm_uuid, timeout)
        await self._call(self._power_off, dom)
        return "Stopped"

    async def _graceful_shutdown(self, dom: libvirt.virDomain, timeout: float) -> bool:
        """Press the ACPI power button and wait up to ``timeout``; True if it went off."""
        try:
            await self._call(dom.shutdown)
        except AgentError as exc:
            log.info("graceful shutdown of %s refused (%s)", dom.name(), exc)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            await asyncio.sleep(GRACE_POLL)
            if not await self._call(dom.isActive):
                return True
        return False

    @staticmethod
    def _power_off(dom: libvirt.virDomain) -> None:
        power_off(dom)

    async def vm_reboot(self, vm_uuid: str, timeout: float) -> str:
        """ZStack's reboot: a graceful stop (destroy after ``timeout``), then a start."""
        dom = await self._call(self._require, vm_uuid)
        await self.vm_stop(vm_uuid, "grace", timeout)
        try:
            await self._call(dom.create)
        except AgentError as exc:
            raise AgentError(f"cannot start VM {vm_uuid} again: {exc}") from None
        return await self._call(_state_of, dom)

    async def vm_pause(self, vm_uuid: str) -> str:
        return await self._call(self._pause, vm_uuid)

    def _pause(self, vm_uuid: str) -> str:
        dom = self._require(vm_uuid)
        state = _state_of(dom)
        if state == "Paused":
            return state
        if state != "Running":
            raise AgentError(f"VM {vm_uuid} is {state}; only a running VM can be paused")
        dom.suspend()
        return _state_of(dom)

    async def vm_resume(self, vm_uuid: str) -> str:
        return await self._call(self._resume, vm_uuid)

    def _resume(self, vm_uuid: str) -> str:
        dom = self._require(vm_uuid)
        state = _state_of(dom)
        if state == "Running":
            return state
        if state != "Paused":
            raise AgentError(f"VM {vm_uuid} is {state}; only a paused VM can be resumed")
        dom.resume()
        return _state_of(dom)

    async def vm_destroy(self, vm_uuid: str) -> None:
        await self._call(self._destroy, vm_uuid)

    def _destroy(self, vm_uuid: str) -> None:
        dom = self._lookup(vm_uuid)
        if dom is not None:
            remove_domain(dom)

    async def vm_sync(self) -> dict[str, str]:
        return await self._call(self._sync)

    # -- data volumes and live chains ----------------------------------------------------
    def _active(self, vm_uuid: str) -> libvirt.virDomain | None:
        """The VM's domain if it is running or paused."""
        dom = self._lookup(vm_uuid) if vm_uuid else None
        return dom if dom is not None and dom.isActive() else None

    def _live_chain(self, op: VolumeOp) -> tuple[libvirt.virDomain, tuple[str, ...]] | None:
        """The running domain of ``op``'s VM and the chain of its disk ``op.target``."""
        dom = self._active(op.vm_uuid)
        if dom is None:
            return None
        chain = disks_of(dom.XMLDesc(0)).get(op.target)
        return (dom, chain) if chain else None

    async def _running_disks(self) -> list[LiveDisk]:
        return await self._call(self._all_running_disks)

    def _all_running_disks(self) -> list[LiveDisk]:
        disks = []
        for dom in self._ensure_conn().listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
            vm_uuid = vm_uuid_of(dom.name())
            if vm_uuid is None:
                continue
            try:
                xml = dom.XMLDesc(0)
            except libvirt.libvirtError as exc:
                if _is(exc, libvirt.VIR_ERR_NO_DOMAIN):
                    continue
                raise
            disks += [LiveDisk(vm_uuid, dev, c) for dev, c in disks_of(xml).items() if c]
        return disks

    async def vm_attach_volume(self, vm_uuid: str, volume: DataVolumeSpec) -> None:
        dom = await self._call(self._active, vm_uuid)
        if dom is None:
            return  # VM_START plugs in every data volume
        storage = volume_chain.storage_of_data_volume(volume.install_path)
        await volume_chain.read_chain(volume.install_path, storage, volume.format)
        await self._call(self._attach, dom, vm_uuid, volume)

    def _attach(self, dom: libvirt.virDomain, vm_uuid: str, volume: DataVolumeSpec) -> None:
        there = disks_of(dom.XMLDesc(0)).get(volume.target)
        if there is not None:
            if there and there[0] == volume.install_path:
                return  # attached already (a repeat)
            raise AgentError(
                f"VM {vm_uuid} has {there[0] if there else 'another disk'} at "
                f"{volume.target}, not {volume.install_path}: refused"
            )
        try:
            dom.attachDeviceFlags(data_disk_xml(volume), _affect(dom, volume.target, True))
        except libvirt.libvirtError as exc:
            raise AgentError(
                f"cannot attach {volume.install_path} to VM {vm_uuid} as {volume.target}: "
                f"{_message(exc)}"
            ) from None

    async def vm_detach_volume(self, vm_uuid: str, volume: DataVolumeSpec, timeout: float) -> None:
        dom = await self._call(self._active, vm_uuid)
        if dom is None or not await self._call(self._detach, dom, vm_uuid, volume):
            return
        deadline = time.monotonic() + timeout
        while await self._call(self._has_disk, dom, volume.target):
            if time.monotonic() >= deadline:
                raise AgentError(
                    f"VM {vm_uuid} did not release {volume.target} ({volume.install_path}) "
                    f"within {timeout:g}s: the guest must answer the ACPI eject (is its OS "
                    "up, with PCI hot-plug?); the disk stays attached"
                )
            await asyncio.sleep(GRACE_POLL)

    def _detach(self, dom: libvirt.virDomain, vm_uuid: str, volume: DataVolumeSpec) -> bool:
        """Ask QEMU to unplug the disk; False if it is not there."""
        xml = dom.XMLDesc(0)
        element = disk_element(xml, volume.target)
        if not element:
            return False
        chain = disks_of(xml).get(volume.target) or ()
        if chain and chain[0] != volume.install_path:
            raise AgentError(
                f"VM {vm_uuid} has {chain[0]} at {volume.target}, not {volume.install_path}: "
                "not detached"
            )
        try:
            dom.detachDeviceFlags(element, _affect(dom, volume.target, False))
        except libvirt.libvirtError as exc:
            # An unplug asked for before (a repeat) is still pending: wait for it.
            if "already in the process of unplug" not in _message(exc):
                raise AgentError(
                    f"cannot detach {volume.target} from VM {vm_uuid}: {_message(exc)}"
                ) from None
        return True

    @staticmethod
    def _has_disk(dom: libvirt.virDomain, target: str) -> bool:
        return dom.isActive() and target in disks_of(dom.XMLDesc(0))

    async def volume_snapshot(
        self, op: VolumeOp, new_install_path: str, full: bool
    ) -> SnapshotResult:
        live = await self._call(self._live_chain, op)
        if live is None:
            return await super().volume_snapshot(op, new_install_path, full)
        dom, chain = live
        if chain[0] == new_install_path and chain[1:2] == (op.install_path,):
            return await self._snapshot_result(op.install_path, new_install_path)  # a repeat
        if chain[0] != op.install_path:
            raise AgentError(
                f"disk {op.target} of VM {op.vm_uuid} is on {chain[0]}, not {op.install_path}"
            )
        root = volume_chain.storage_root(op.storage_path)
        volume_chain.require_target_in_storage(new_install_path, root, "newInstallPath")
        files = await volume_chain.read_chain(op.install_path, root)
        if full and len(files) > 1:
            await self._block_pull(dom, op, "")
            files = await volume_chain.read_chain(op.install_path, root)
        top = files[0]
        if await volume_chain.existing_snapshot(op.install_path, new_install_path, root) is None:
            await images.create_overlay(new_install_path, op.install_path, top.format, top.size)
        await self._call(self._switch_disk, dom, op, new_install_path)
        return await self._snapshot_result(op.install_path, new_install_path)

    def _switch_disk(self, dom: libvirt.virDomain, op: VolumeOp, new_file: str) -> None:
        xml = snapshot_xml(list(disks_of(dom.XMLDesc(0))), op.target, new_file)
        try:
            dom.snapshotCreateXML(xml, SNAPSHOT_FLAGS)
        except libvirt.libvirtError as exc:
            raise AgentError(
                f"cannot switch disk {op.target} of VM {op.vm_uuid} to {new_file}: {_message(exc)}"
            ) from None

    async def volume_rebase(self, op: VolumeOp, backing_file: str) -> str:
        live = await self._call(self._live_chain, op)
        if live is None or op.install_path not in live[1]:
            return await super().volume_rebase(op, backing_file)
        dom, chain = live
        if chain[0] != op.install_path:
            raise AgentError(
                f"cannot rebase {op.install_path}: it is a backing file of disk {op.target} "
                f"of the running VM {op.vm_uuid} (only its active file {chain[0]} can be)"
            )
        return await self._block_pull(dom, op, backing_file)

    async def _block_pull(self, dom: libvirt.virDomain, op: VolumeOp, backing_file: str) -> str:
        """``blockRebase`` of the disk's active file onto ``backing_file`` ("" none), its
        skipped files' data copied in by QEMU; waited for.  The backing file afterwards."""
        await self._wait_block_job(dom, op)  # a pull a lost answer left running
        chain = await self._call(self._disk_chain, dom, op)
        if (chain[1] if len(chain) > 1 else "") == backing_file:
            # A repeat: the first attempt may have ended before its flush.
            await self._call(self._flush_disk, dom, op, chain[0])
            return backing_file
        files = await volume_chain.read_chain(op.install_path, op.storage_path)
        if backing_file and backing_file not in [f.path for f in files[2:]]:
            raise AgentError(
                f"{backing_file} is not in the backing chain of {op.install_path} below its "
                f"backing file: {' -> '.join(f.path for f in files)}"
            )
        try:
            await self._call(dom.blockRebase, op.target, backing_file or None, 0, 0)
        except AgentError as exc:
            raise AgentError(
                f"cannot pull into disk {op.target} of VM {op.vm_uuid}: {exc}"
            ) from None
        await self._wait_block_job(dom, op)
        chain = await self._call(self._disk_chain, dom, op)
        now = chain[1] if len(chain) > 1 else ""
        if now != backing_file:
            raise AgentError(
                f"the block pull into disk {op.target} of VM {op.vm_uuid} ended with the disk "
                f"on {now or 'no backing file'}, not {backing_file or 'none'}"
            )
        await self._call(self._flush_disk, dom, op, chain[0])
        log.info("pulled disk %s of VM %s onto %s", op.target, op.vm_uuid, backing_file or "-")
        return backing_file

    def _flush_disk(self, dom: libvirt.virDomain, op: VolumeOp, path: str) -> None:
        """Make QEMU write what it holds of the disk's active file ``path`` to the disk.

        A ``blockRebase`` pull ends with the file's header naming its new backing file,
        but the qcow2 L2 entries of the clusters it copied in may still be only in QEMU's
        metadata cache (checked on QEMU 7.2: ``qemu-img convert -U`` of the file right
        after the job reads zeros where the pulled data is, until a flush), so a crash
        after the skipped files are deleted would lose data.  libvirt 9.0 has no call to
        flush one disk; QEMU's QMP has none either.  What works (all three checked): HMP
        ``qemu-io <node> "flush"`` on the file's format node (``query-named-block-nodes``),
        which ``bdrv_flush``es it (metadata written, then fdatasync), used here through
        ``libvirt_qemu.qemuMonitorCommand`` (libvirt marks the domain tainted
        "custom-monitor", harmless); failing that, a pause and resume of a running domain
        (QEMU's vm_stop flushes every disk: ~5 ms of pause).  A paused domain is not
        resumed for it: then the error says so.  Runs in a pool thread."""
        try:
            node = self._format_node(dom, path)
            answer = libvirt_qemu.qemuMonitorCommand(
                dom, f'qemu-io {node} "flush"', libvirt_qemu.VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP
            )
            if answer.strip():
                raise AgentError(answer.strip())
            return
        except (libvirt.libvirtError, AgentError) as exc:
            problem = _message(exc) if isinstance(exc, libvirt.libvirtError) else str(exc)
        state = dom.state()[0]
        if state != libvirt.VIR_DOMAIN_RUNNING:
            raise AgentError(
                f"cannot flush {path} (disk {op.target} of VM {op.vm_uuid}) after the block "
                f"pull: {problem}; the VM is not running, so it was not paused to flush it"
            )
        log.warning(
            "qemu-io flush of %s failed (%s); pausing VM %s to flush", path, problem, op.vm_uuid
        )
        dom.suspend()
        dom.resume()

    @staticmethod
    def _format_node(dom: libvirt.virDomain, path: str) -> str:
        """The node name of QEMU's format (qcow2/raw) node opened on ``path``."""
        query = json.dumps({"execute": "query-named-block-nodes", "arguments": {"flat": True}})
        nodes = json.loads(libvirt_qemu.qemuMonitorCommand(dom, query, 0)).get("return", [])
        for node in nodes:
            if node.get("file") == path and node.get("drv") in volume_chain.CHAIN_FORMATS:
                return str(node["node-name"])
        raise AgentError(f"QEMU has no format node on {path}")

    def _disk_chain(self, dom: libvirt.virDomain, op: VolumeOp) -> tuple[str, ...]:
        chain = disks_of(dom.XMLDesc(0)).get(op.target)
        if not chain:
            raise AgentError(f"VM {op.vm_uuid} has no disk {op.target} any more")
        return chain

    async def _wait_block_job(self, dom: libvirt.virDomain, op: VolumeOp) -> None:
        deadline = time.monotonic() + BLOCK_JOB_TIMEOUT
        while await self._call(dom.blockJobInfo, op.target, 0):
            if time.monotonic() >= deadline:
                raise AgentError(
                    f"the block job on disk {op.target} of VM {op.vm_uuid} did not end "
                    f"within {BLOCK_JOB_TIMEOUT:g}s"
                )
            await asyncio.sleep(JOB_POLL)

    async def volume_resize(self, op: VolumeOp, size: int) -> int:
        live = await self._call(self._live_chain, op)
        if live is None or op.install_path not in live[1]:
            return await super().volume_resize(op, size)
        dom, chain = live
        if chain[0] != op.install_path:
            raise AgentError(
                f"cannot resize {op.install_path}: it is a backing file of disk {op.target} "
                f"of the running VM {op.vm_uuid}"
            )
        await volume_chain.read_chain(op.install_path, op.storage_path)
        return await self._call(self._block_resize, dom, op, size)

    @staticmethod
    def _block_resize(dom: libvirt.virDomain, op: VolumeOp, size: int) -> int:
        current = dom.blockInfo(op.target)[0]
        volume_chain.check_growth(op.install_path, current, size)
        if size > current:
            dom.blockResize(op.target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        return int(dom.blockInfo(op.target)[0])

    # -- reconciliation ------------------------------------------------------------
    async def lab_inventory(self, storage_paths: list[str]) -> list[HostObject]:
        from agent import lab_inventory as inv

        finder = inv.LabFinder(self._lab_dir(), self.network.lab)
        return await self._call(lambda: inv.inventory(finder, self._ensure_conn(), storage_paths))

    async def lab_remove(self, objects: list[tuple[str, str]], storage_paths: list[str]) -> Removal:
        from agent import lab_inventory as inv

        finder = inv.LabFinder(self._lab_dir(), self.network.lab)
        return await self._call(
            lambda: inv.remove_objects(finder, self._ensure_conn(), objects, storage_paths)
        )

    def _lab_dir(self) -> Path:
        return self.lab_dir or default_lab_dir(self.network.data_dir)

    def _sync(self) -> dict[str, str]:
        states: dict[str, str] = {}
        for dom in self._ensure_conn().listAllDomains(0):
            vm_uuid = vm_uuid_of(dom.name())
            if vm_uuid is None:
                continue
            try:
                states[vm_uuid] = _state_of(dom)
            except libvirt.libvirtError as exc:
                if not _is(exc, libvirt.VIR_ERR_NO_DOMAIN):  # gone since the listing
                    raise
        return states

    async def vm_console(self, vm_uuid: str) -> VmConsole:
        return await self._call(self._console, vm_uuid)

    def _console(self, vm_uuid: str) -> VmConsole:
        dom = self._require(vm_uuid)
        if not dom.isActive():
            raise AgentError(f"VM {vm_uuid} is {_state_of(dom)}; its console has no pty")
        pty, log_path = console_of(dom.XMLDesc(0))
        if not pty:
            raise AgentError(f"VM {vm_uuid} has no pty console")
        return VmConsole(pty=pty, console_log_path=log_path)

    async def vm_console_open(self, vm_uuid: str) -> ConsoleStream:
        return await self.consoles.open(vm_uuid, lambda: self._open_console(vm_uuid))

    async def _open_console(self, vm_uuid: str) -> ConsoleStream:
        dom, log_path = await self._call(self._console_domain, vm_uuid)
        return await LibvirtConsole.open(dom, vm_uuid, log_path, self._pool)

    def _console_domain(self, vm_uuid: str) -> tuple[libvirt.virDomain, str]:
        dom = self._require(vm_uuid)
        if not dom.isActive():
            raise AgentError(f"VM {vm_uuid} is {_state_of(dom)}; its console cannot be opened")
        return dom, console_of(dom.XMLDesc(0))[1]
