"""The protocol's commands (contracts.kvm) mapped onto a backend.

Each handler checks its JSON fields (a missing or invalid one is answered as a
failure naming the field), calls the backend, and returns the answer's fields in
ZStack's camelCase.  Operations on one VM are serialised, as the core does.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import PurePosixPath
from typing import Any

from agent.backend import STOP_TYPES, Backend, ExtraCommand, NicSpec, VmSpec
from agent.lab_inventory import KINDS
from agent.network import names
from agent.network.base import ROLES, ApplianceNic, ApplianceSpec
from agent.reports import Reporter
from agent.storage import delete_console_log
from agentkit.errors import AgentError, ArgumentError
from agentkit.server import CommandContext, CommandRegistry, Handler
from contracts import kvm as p
from contracts.names import MAX_APPLIANCE_NICS

_VM_UUID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}")
DEFAULT_TIMEOUT = 60.0
ROOT_VOLUME_FORMATS = ("qcow2", "raw")


class Fields:
    """Typed access to a command's JSON object; errors name the field."""

    def __init__(self, raw: dict[str, Any], prefix: str = "") -> None:
        self.raw = raw
        self.prefix = prefix

    def _name(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def text(self, name: str, default: str | None = None) -> str:
        value = self.raw.get(name)
        if value is None or value == "":
            if default is None:
                raise ArgumentError(f"field {self._name(name)!r} is required")
            return default
        if not isinstance(value, str):
            raise ArgumentError(f"field {self._name(name)!r} must be a string")
        return value

    def integer(self, name: str, default: int | None = None, minimum: int = 0) -> int:
        value = self.raw.get(name)
        if value is None:
            if default is None:
                raise ArgumentError(f"field {self._name(name)!r} is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ArgumentError(f"field {self._name(name)!r} must be an integer >= {minimum}")
        return value

    def number(self, name: str, default: float) -> float:
        value = self.raw.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ArgumentError(f"field {self._name(name)!r} must be a number >= 0")
        return float(value)

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.raw.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ArgumentError(f"field {self._name(name)!r} must be true or false")
        return value

    def texts(self, name: str) -> list[str]:
        value = self.raw.get(name)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ArgumentError(f"field {self._name(name)!r} must be a list of strings")
        return value

    def object(self, name: str) -> Fields:
        value = self.raw.get(name)
        if not isinstance(value, dict):
            raise ArgumentError(f"field {self._name(name)!r} must be an object")
        return Fields(value, f"{self._name(name)}.")

    def objects(self, name: str) -> list[Fields]:
        value = self.raw.get(name) or []
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise ArgumentError(f"field {self._name(name)!r} must be a list of objects")
        return [Fields(v, f"{self._name(name)}[{i}].") for i, v in enumerate(value)]

    def matching(
        self, name: str, pattern: re.Pattern[str], what: str, default: str | None = None
    ) -> str:
        value = self.text(name, default)
        if value and not pattern.fullmatch(value):
            raise ArgumentError(f"field {self._name(name)!r} is not {what}: {value!r}")
        return value

    def vm_uuid(self) -> str:
        return self.matching("vmUuid", _VM_UUID, "a VM uuid (letters, digits, . _ -)")

    def bridge_name(self, name: str = "bridgeName") -> str:
        return names.check_bridge_name(self.text(name), self._name(name))

    def mac(self, name: str = "mac") -> str:
        return self.matching(name, _MAC, "a MAC address").lower()

    def appliance_uuid(self) -> str:
        return names.check_appliance_uuid(self.text("applianceUuid"))

    def ipv4_interface(self, name: str) -> ipaddress.IPv4Interface:
        """An ``address/prefix`` field, like ``10.0.0.1/24``."""
        value = self.text(name)
        if "/" not in value:
            raise ArgumentError(f"field {self._name(name)!r} needs a prefix, like 10.0.0.1/24")
        return _host_interface(value, self._name(name))

    def ipv4_interface_of(self, ip: str, prefix_length: str) -> ipaddress.IPv4Interface:
        """An address field and a prefix length field, together."""
        length = self.integer(prefix_length, minimum=1)
        return _host_interface(f"{self.text(ip)}/{length}", self._name(ip))


def _host_interface(value: str, field: str) -> ipaddress.IPv4Interface:
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ArgumentError(f"field {field!r} is not an IPv4 address/prefix: {value!r}") from None
    net = iface.network
    if net.prefixlen > 30 or iface.ip in (net.network_address, net.broadcast_address):
        raise ArgumentError(
            f"field {field!r} must be a host address in a network of at most /30: {value!r}"
        )
    return iface


def _unique(values: list[str], field: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ArgumentError(f"field {field!r} has {value} twice")
        seen.add(value)


def vm_spec(f: Fields) -> VmSpec:
    root = f.object("rootVolume")
    nics = tuple(
        NicSpec(
            mac=nic.mac(),
            bridge_name=nic.bridge_name(),
            device_name=names.check_tap_name(nic.text("deviceName"), nic._name("deviceName")),
        )
        for nic in f.objects("nics")
    )
    _unique([n.mac for n in nics], "nics[].mac")
    _unique([n.device_name for n in nics], "nics[].deviceName")
    root_format = root.text("format", "qcow2")
    if root_format not in ROOT_VOLUME_FORMATS:
        raise ArgumentError(
            f"field 'rootVolume.format' must be one of {', '.join(ROOT_VOLUME_FORMATS)}"
        )
    acceleration = f.text("acceleration", "")
    if acceleration not in ("", "kvm", "tcg"):
        raise ArgumentError(f"field 'acceleration' must be kvm or tcg, not {acceleration!r}")
    return VmSpec(
        vm_uuid=f.vm_uuid(),
        vm_name=f.text("vmName", ""),
        cpu_num=f.integer("cpuNum", minimum=1),
        memory_size=f.integer("memorySize", minimum=1024 * 1024),
        root_volume_path=_absolute(root, "installPath"),
        root_volume_format=root_format,
        nics=nics,
        console_log_path=_absolute(f, "consoleLogPath", optional=True),
        acceleration=acceleration,
        timeout=f.number("timeout", DEFAULT_TIMEOUT),
    )


def appliance_spec(f: Fields) -> ApplianceSpec:
    nics = []
    for nic in f.objects("nics"):
        bridge, mac = nic.bridge_name(), nic.mac()
        iface = nic.ipv4_interface_of("ip", "prefixLength")
        role = nic.text("role", "guest")
        if role not in ROLES:
            raise ArgumentError(f"field {nic._name('role')!r} must be one of {', '.join(ROLES)}")
        nics.append(ApplianceNic(bridge, mac, str(iface.ip), iface.network.prefixlen, role))
    if not nics:
        raise ArgumentError("field 'nics' needs at least one NIC")
    if len(nics) > MAX_APPLIANCE_NICS:
        raise ArgumentError(f"field 'nics' has more than {MAX_APPLIANCE_NICS} NICs")
    _unique([n.mac for n in nics], "nics[].mac")
    gateway = f.text("defaultGateway", "")
    if gateway:
        try:
            address = ipaddress.IPv4Address(gateway)
        except ValueError:
            raise ArgumentError(
                f"field 'defaultGateway' is not an IPv4 address: {gateway!r}"
            ) from None
        if not any(n.role == "public" and address in n.interface.network for n in nics):
            raise ArgumentError(f"field 'defaultGateway' {gateway} is in no public NIC's network")
    return ApplianceSpec(f.appliance_uuid(), tuple(nics), gateway)


def _absolute(f: Fields, name: str, optional: bool = False) -> str:
    value = f.text(name, "" if optional else None)
    if value and not value.startswith("/"):
        raise ArgumentError(f"field {f._name(name)!r} must be an absolute path: {value!r}")
    if ".." in PurePosixPath(value).parts:
        raise ArgumentError(f"field {f._name(name)!r} must not climb with '..': {value!r}")
    return value


class KeyedLocks:
    """One asyncio lock per key, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class AgentCommands:
    def __init__(self, backend: Backend, reporter: Reporter) -> None:
        self.backend = backend
        self.reporter = reporter
        self.vm_locks = KeyedLocks()
        self.host_network_lock = asyncio.Lock()
        """Bridges and host NAT: one host-wide state (links, one nftables table)."""
        self.appliance_locks = KeyedLocks()
        self.file_locks = KeyedLocks()
        """Volume creations and downloads, by target path: a repeat of one still running
        (its answer was lost) waits for it, then finds its file in place."""

    def registry(self) -> CommandRegistry:
        registry = CommandRegistry()
        sync: dict[str, Handler] = {
            p.HOST_CONNECT: self.host_connect,
            p.HOST_PING: self.host_ping,
            p.HOST_CAPACITY: self.host_capacity,
            p.VM_PAUSE: self.vm_pause,
            p.VM_RESUME: self.vm_resume,
            p.VM_SYNC: self.vm_sync,
            p.VM_CONSOLE: self.vm_console,
            p.VM_EXPUNGE: self.vm_expunge,
            p.VOLUME_CREATE: self.volume_create,
            p.VOLUME_DELETE: self.volume_delete,
            p.IMAGE_INFO: self.image_info,
            p.FILE_DELETE: self.file_delete,
            p.STORAGE_INIT: self.storage_init,
            p.BRIDGE_CREATE: self.bridge_create,
            p.BRIDGE_DELETE: self.bridge_delete,
            p.BRIDGE_CHECK: self.bridge_check,
            p.HOSTNAT_SET: self.hostnat_set,
            p.HOSTNAT_REMOVE: self.hostnat_remove,
            p.HOST_ROUTES: self.host_routes,
            p.APPLIANCE_CREATE: self.appliance_create,
            p.APPLIANCE_DESTROY: self.appliance_destroy,
            p.APPLIANCE_CHECK: self.appliance_check,
            p.LAB_INVENTORY: self.lab_inventory,
            p.LAB_REMOVE: self.lab_remove,
        }
        asynchronous: dict[str, Handler] = {
            p.VM_START: self.vm_start,
            p.VM_STOP: self.vm_stop,
            p.VM_REBOOT: self.vm_reboot,
            p.VM_DESTROY: self.vm_destroy,
            p.IMAGE_DOWNLOAD: self.image_download,
        }
        for path, handler in sync.items():
            registry.add(path, handler)
        for path, handler in asynchronous.items():
            registry.add(path, handler, is_async=True)
        for path, extra in self.backend.extra_commands().items():
            registry.add(path, _without_context(extra))
        return registry

    # -- host ------------------------------------------------------------------
    async def host_connect(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        host_uuid = f.text("hostUuid")
        report_url = f.text("reportUrl", "")
        if report_url and not report_url.startswith(("http://", "https://")):
            raise ArgumentError(f"field 'reportUrl' must be an http(s) URL: {report_url!r}")
        facts = await self.backend.connect(host_uuid, report_url)
        self.reporter.configure(host_uuid, report_url)
        return {
            "hostUuid": host_uuid,
            "hostname": facts.hostname,
            "libvirtVersion": facts.libvirt_version,
            "qemuImgVersion": facts.qemu_img_version,
            "cpuNum": facts.cpu_num,
            "cpuSockets": facts.cpu_sockets,
            "cpuModelName": facts.cpu_model_name,
            "cpuFlags": list(facts.cpu_flags),
            "totalMemory": facts.total_memory,
            "acceleration": facts.acceleration,
            "hypervisorType": facts.hypervisor_type,
        }

    async def host_ping(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        await self.backend.ping()
        return {"hostUuid": self.reporter.host_uuid}

    async def host_capacity(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        c = await self.backend.capacity()
        return {
            "cpuNum": c.cpu_num,
            "totalMemory": c.total_memory,
            "usedMemory": c.used_memory,
            "freeMemory": c.free_memory,
        }

    # -- VMs -------------------------------------------------------------------
    async def vm_start(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        spec = vm_spec(Fields(body))
        async with self.vm_locks.hold(spec.vm_uuid):
            state = await self.backend.vm_start(spec)
        return {"vmUuid": spec.vm_uuid, "state": state}

    async def vm_stop(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        vm_uuid = f.vm_uuid()
        stop_type = f.text("type", "grace")
        if stop_type not in STOP_TYPES:
            raise ArgumentError(f"field 'type' must be one of {', '.join(STOP_TYPES)}")
        timeout = f.number("timeout", DEFAULT_TIMEOUT)
        async with self.vm_locks.hold(vm_uuid):
            state = await self.backend.vm_stop(vm_uuid, stop_type, timeout)
        return {"vmUuid": vm_uuid, "state": state}

    async def vm_reboot(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        vm_uuid = f.vm_uuid()
        timeout = f.number("timeout", DEFAULT_TIMEOUT)
        async with self.vm_locks.hold(vm_uuid):
            state = await self.backend.vm_reboot(vm_uuid, timeout)
        return {"vmUuid": vm_uuid, "state": state}

    async def vm_pause(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        vm_uuid = Fields(body).vm_uuid()
        async with self.vm_locks.hold(vm_uuid):
            state = await self.backend.vm_pause(vm_uuid)
        return {"vmUuid": vm_uuid, "state": state}

    async def vm_resume(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        vm_uuid = Fields(body).vm_uuid()
        async with self.vm_locks.hold(vm_uuid):
            state = await self.backend.vm_resume(vm_uuid)
        return {"vmUuid": vm_uuid, "state": state}

    async def vm_destroy(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        vm_uuid = Fields(body).vm_uuid()
        async with self.vm_locks.hold(vm_uuid):
            await self.backend.vm_destroy(vm_uuid)
        return {"vmUuid": vm_uuid}

    async def vm_sync(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        return {"states": await self.backend.vm_sync()}

    async def vm_expunge(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        vm_uuid = f.vm_uuid()
        console_log = _absolute(f, "consoleLogPath", optional=True)
        async with self.vm_locks.hold(vm_uuid):
            if vm_uuid in await self.backend.vm_sync():
                raise AgentError(f"VM {vm_uuid} still has a domain; destroy it first")
            if console_log:
                await delete_console_log(vm_uuid, console_log)
        return {}

    async def vm_console(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        vm_uuid = Fields(body).vm_uuid()
        console = await self.backend.vm_console(vm_uuid)
        return {"vmUuid": vm_uuid, "pty": console.pty, "consoleLogPath": console.console_log_path}

    # -- volumes and images ----------------------------------------------------
    async def volume_create(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        install_path = _absolute(f, "installPath")
        backing_file = _absolute(f, "backingFile", optional=True)
        size, fmt = f.integer("size", 0), f.text("format", "qcow2")
        async with self.file_locks.hold(install_path):
            volume = await self.backend.volume_create(install_path, backing_file, size, fmt)
        return {
            "installPath": volume.install_path,
            "size": volume.size,
            "actualSize": volume.actual_size,
        }

    async def volume_delete(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        await self.backend.volume_delete(_absolute(Fields(body), "installPath"))
        return {}

    async def image_download(self, body: dict[str, Any], ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        task_uuid = f.text("taskUuid", ctx.task_uuid)

        def progress(done: int, total: int) -> None:
            self.reporter.progress(task_uuid, "download", done, total)

        stall_timeout = f.number("stallTimeout", p.DEFAULT_STALL_TIMEOUT)
        if stall_timeout == 0:
            raise ArgumentError("field 'stallTimeout' must be a number > 0")
        url, install_path = f.text("url"), _absolute(f, "installPath")
        checksum = f.text("checksum", "")
        async with self.file_locks.hold(install_path):
            result = await self.backend.image_download(
                url, install_path, checksum, progress, stall_timeout
            )
        return {
            "installPath": result.install_path,
            "format": result.format,
            "size": result.size,
            "actualSize": result.actual_size,
            "md5sum": result.md5sum,
        }

    async def image_info(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        info = await self.backend.image_info(_absolute(Fields(body), "installPath"))
        return {"format": info.format, "size": info.size, "actualSize": info.actual_size}

    async def file_delete(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        await self.backend.file_delete(_absolute(Fields(body), "path"))
        return {}

    async def storage_init(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        path = _absolute(Fields(body), "path")
        capacity = await self.backend.storage_init(path)
        return {
            "path": path,
            "totalCapacity": capacity.total,
            "availableCapacity": capacity.available,
        }

    # -- networking ------------------------------------------------------------
    async def bridge_create(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        bridge = f.bridge_name()
        physical = f.text("physicalInterface", "")
        if physical:
            names.check_interface_name(physical)
        allow = f.boolean("allowDefaultRouteInterface")
        async with self.host_network_lock:
            await self.backend.network.bridge_create(bridge, physical, allow)
        return {"bridgeName": bridge}

    async def bridge_delete(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        bridge = Fields(body).bridge_name()
        async with self.host_network_lock:
            await self.backend.network.bridge_delete(bridge)
        return {}

    async def bridge_check(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        bridges = f.texts("bridgeNames")
        for i, name in enumerate(bridges):
            names.check_bridge_name(name, f"bridgeNames[{i}]")
        return {"missing": await self.backend.network.bridge_check(bridges)}

    async def hostnat_set(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        bridge, gateway = f.bridge_name(), f.ipv4_interface("gatewayCidr")
        async with self.host_network_lock:
            await self.backend.network.hostnat_set(bridge, gateway)
        return {}

    async def hostnat_remove(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        bridge, gateway = f.bridge_name(), f.ipv4_interface("gatewayCidr")
        async with self.host_network_lock:
            await self.backend.network.hostnat_remove(bridge, gateway)
        return {}

    async def host_routes(self, _body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        routes = await self.backend.network.host_routes()
        return {
            "routes": [
                {"destination": r.destination, "interface": r.interface, "gateway": r.gateway}
                for r in routes
            ]
        }

    async def appliance_create(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        spec = appliance_spec(Fields(body))
        async with self.appliance_locks.hold(spec.appliance_uuid):
            info = await self.backend.network.appliance_create(spec)
        return {
            "namespace": info.namespace,
            "socketPath": info.socket_path,
            "tokenFile": info.token_file,
            "agentPid": info.agent_pid,
        }

    async def appliance_destroy(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        appliance_uuid = Fields(body).appliance_uuid()
        async with self.appliance_locks.hold(appliance_uuid):
            await self.backend.network.appliance_destroy(appliance_uuid)
        return {}

    async def appliance_check(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        appliance_uuid = Fields(body).appliance_uuid()
        async with self.appliance_locks.hold(appliance_uuid):
            status = await self.backend.network.appliance_check(appliance_uuid)
        return {
            "namespace": status.namespace,
            "agentRunning": status.agent_running,
            "missingNics": list(status.missing_nics),
        }

    # -- reconciliation ----------------------------------------------------------
    async def lab_inventory(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        paths = _storage_paths(Fields(body))
        objects = await self.backend.lab_inventory(paths)
        return {"lab": self.backend.network.lab, "objects": [o.to_json() for o in objects]}

    async def lab_remove(self, body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        f = Fields(body)
        paths = _storage_paths(f)
        wanted = []
        for obj in f.objects("objects"):
            kind = obj.text("kind")
            if kind not in KINDS:
                raise ArgumentError(
                    f"field {obj._name('kind')!r} must be one of {', '.join(KINDS)}"
                )
            wanted.append((kind, obj.text("name")))
        # Links and host NAT are one host-wide state: no bridge or NAT command meanwhile.
        async with self.host_network_lock:
            result = await self.backend.lab_remove(wanted, paths)
        return {
            "removed": [o.to_json() for o in result.removed],
            "refused": [{"kind": o.kind, "name": o.name, "error": e} for o, e in result.refused],
            "failures": [{"kind": o.kind, "name": o.name, "error": e} for o, e in result.failures],
        }


def _storage_paths(f: Fields) -> list[str]:
    paths = f.texts("storagePaths")
    for i, path in enumerate(paths):
        _absolute(Fields({"path": path}, f"storagePaths[{i}]."), "path")
    return paths


def _without_context(extra: ExtraCommand) -> Handler:
    async def handler(body: dict[str, Any], _ctx: CommandContext) -> dict[str, Any]:
        return await extra(body)

    return handler
