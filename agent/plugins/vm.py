"""VMs: the domain's life cycle, its state, and its serial console (commands and the
websocket stream).  Operations on one VM are serialised, as the core does."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.backend import STOP_TYPES, DataVolumeSpec, NicSpec, VmSpec
from agent.console_relay import ConsoleRelay
from agent.context import HostAgentContext
from agent.fields import Fields, absolute_path, unique
from agent.network import names
from agent.storage import delete_console_log
from agentkit.errors import AgentError, ArgumentError
from agentkit.locks import KeyedLocks
from agentkit.parse import parse_request
from agentkit.plugins import AgentPlugin
from agentkit.server import CommandContext, CommandRegistry, StreamHandler
from contracts import kvm
from contracts.base import Ack

DEFAULT_TIMEOUT = 60.0
ROOT_VOLUME_FORMATS = ("qcow2", "raw")


def vm_spec(f: Fields) -> VmSpec:
    root = f.object("rootVolume")
    nics = tuple(_nic_spec(nic) for nic in f.objects("nics"))
    unique([n.mac for n in nics], "nics[].mac")
    unique([n.device_name for n in nics], "nics[].deviceName")
    root_format = root.text("format", "qcow2")
    if root_format not in ROOT_VOLUME_FORMATS:
        raise ArgumentError(
            f"field 'rootVolume.format' must be one of {', '.join(ROOT_VOLUME_FORMATS)}"
        )
    data_volumes = tuple(_data_volume_spec(v) for v in f.objects("dataVolumes"))
    unique([str(v.device_id) for v in data_volumes], "dataVolumes[].deviceId")
    unique([v.install_path for v in data_volumes] + [root.text("installPath")], "installPath")
    acceleration = f.text("acceleration", "")
    if acceleration not in ("", "kvm", "tcg"):
        raise ArgumentError(f"field 'acceleration' must be kvm or tcg, not {acceleration!r}")
    return VmSpec(
        vm_uuid=f.vm_uuid(),
        vm_name=f.text("vmName", ""),
        cpu_num=f.integer("cpuNum", minimum=1),
        memory_size=f.integer("memorySize", minimum=1024 * 1024),
        root_volume_path=absolute_path(root, "installPath"),
        root_volume_format=root_format,
        nics=nics,
        console_log_path=absolute_path(f, "consoleLogPath", optional=True),
        acceleration=acceleration,
        timeout=f.number("timeout", DEFAULT_TIMEOUT),
        smbios_serial=smbios_serial(f),
        data_volumes=data_volumes,
    )


def _data_volume_spec(volume: Fields) -> DataVolumeSpec:
    fmt = volume.text("format", "qcow2")
    if fmt not in ROOT_VOLUME_FORMATS:
        raise ArgumentError(
            f"field {volume._name('format')!r} must be one of {', '.join(ROOT_VOLUME_FORMATS)}, "
            f"not {fmt!r}"
        )
    device_id = volume.integer("deviceId", minimum=1)
    if device_id > kvm.MAX_DATA_VOLUMES:
        raise ArgumentError(
            f"field {volume._name('deviceId')!r} must be 1..{kvm.MAX_DATA_VOLUMES}: {device_id}"
        )
    return DataVolumeSpec(
        uuid=volume.text("uuid"),
        install_path=absolute_path(volume, "installPath"),
        device_id=device_id,
        format=fmt,
    )


def smbios_serial(f: Fields) -> str:
    """``smbiosSerial``, printable ASCII of bounded length (it reaches the domain XML)."""
    value = f.text("smbiosSerial", "")
    if len(value) > kvm.SMBIOS_SERIAL_MAX or not re.fullmatch(kvm.SMBIOS_SERIAL, value):
        raise ArgumentError(
            f"field 'smbiosSerial' must be printable ASCII of at most {kvm.SMBIOS_SERIAL_MAX} "
            f"characters, got {value[:40]!r}"
        )
    return value


def _nic_spec(nic: Fields) -> NicSpec:
    mac = nic.mac()
    port = nic.nic_port()
    return NicSpec(
        mac=mac,
        bridge_name=port.bridge_name,
        device_name=names.check_tap_name(nic.text("deviceName"), nic._name("deviceName")),
        virtual_port_type=port.virtual_port_type,
        vlan_id=port.vlan_id,
    )


class VmCommands(AgentPlugin[HostAgentContext]):
    def __init__(self, ctx: HostAgentContext) -> None:
        super().__init__(ctx)
        self.vm_locks = KeyedLocks()
        self.consoles = ConsoleRelay(ctx.backend)

    def commands(self, registry: CommandRegistry) -> None:
        registry.add(kvm.VM_START, self.vm_start, is_async=True)
        registry.add(kvm.VM_STOP, self.vm_stop, is_async=True)
        registry.add(kvm.VM_REBOOT, self.vm_reboot, is_async=True)
        registry.add(kvm.VM_DESTROY, self.vm_destroy, is_async=True)
        registry.add(kvm.VM_PAUSE, self.vm_pause)
        registry.add(kvm.VM_RESUME, self.vm_resume)
        registry.add(kvm.VM_SYNC, self.vm_sync)
        registry.add(kvm.VM_CONSOLE, self.vm_console)
        registry.add(kvm.VM_EXPUNGE, self.vm_expunge)
        registry.add(kvm.VM_ATTACH_VOLUME, self.vm_attach_volume)
        registry.add(kvm.VM_DETACH_VOLUME, self.vm_detach_volume)

    def streams(self) -> Mapping[str, StreamHandler]:
        return {kvm.VM_CONSOLE_STREAM: self.consoles.handle}

    async def shutdown(self) -> None:
        await self.consoles.shutdown()

    async def vm_start(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.VmStateRsp:
        spec = vm_spec(Fields(body))
        async with self.vm_locks.hold(spec.vm_uuid):
            state = await self.ctx.backend.vm_start(spec)
        return kvm.VmStateRsp(vm_uuid=spec.vm_uuid, state=state)

    async def vm_stop(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.VmStateRsp:
        f = Fields(body)
        vm_uuid = f.vm_uuid()
        stop_type = f.text("type", "grace")
        if stop_type not in STOP_TYPES:
            raise ArgumentError(f"field 'type' must be one of {', '.join(STOP_TYPES)}")
        timeout = f.number("timeout", DEFAULT_TIMEOUT)
        async with self.vm_locks.hold(vm_uuid):
            state = await self.ctx.backend.vm_stop(vm_uuid, stop_type, timeout)
        return kvm.VmStateRsp(vm_uuid=vm_uuid, state=state)

    async def vm_reboot(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.VmStateRsp:
        f = Fields(body)
        vm_uuid = f.vm_uuid()
        timeout = f.number("timeout", DEFAULT_TIMEOUT)
        async with self.vm_locks.hold(vm_uuid):
            state = await self.ctx.backend.vm_reboot(vm_uuid, timeout)
        return kvm.VmStateRsp(vm_uuid=vm_uuid, state=state)

    async def vm_pause(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.VmStateRsp:
        vm_uuid = Fields(body).vm_uuid()
        async with self.vm_locks.hold(vm_uuid):
            state = await self.ctx.backend.vm_pause(vm_uuid)
        return kvm.VmStateRsp(vm_uuid=vm_uuid, state=state)

    async def vm_resume(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.VmStateRsp:
        vm_uuid = Fields(body).vm_uuid()
        async with self.vm_locks.hold(vm_uuid):
            state = await self.ctx.backend.vm_resume(vm_uuid)
        return kvm.VmStateRsp(vm_uuid=vm_uuid, state=state)

    async def vm_destroy(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.DestroyVmRsp:
        vm_uuid = Fields(body).vm_uuid()
        async with self.vm_locks.hold(vm_uuid):
            await self.ctx.backend.vm_destroy(vm_uuid)
        return kvm.DestroyVmRsp(vm_uuid=vm_uuid)

    async def vm_sync(self, _body: dict[str, Any], _ctx: CommandContext) -> kvm.VmSyncRsp:
        return kvm.VmSyncRsp(states=await self.ctx.backend.vm_sync())

    async def vm_expunge(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        f = Fields(body)
        vm_uuid = f.vm_uuid()
        console_log = absolute_path(f, "consoleLogPath", optional=True)
        async with self.vm_locks.hold(vm_uuid):
            if vm_uuid in await self.ctx.backend.vm_sync():
                raise AgentError(f"VM {vm_uuid} still has a domain; destroy it first")
            if console_log:
                await delete_console_log(vm_uuid, console_log)
        return Ack()

    async def vm_console(self, body: dict[str, Any], _ctx: CommandContext) -> kvm.VmConsoleRsp:
        vm_uuid = Fields(body).vm_uuid()
        console = await self.ctx.backend.vm_console(vm_uuid)
        return kvm.VmConsoleRsp(
            vm_uuid=vm_uuid, pty=console.pty, console_log_path=console.console_log_path
        )

    async def vm_attach_volume(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse_request(kvm.AttachVolumeCmd, body)
        vm_uuid = Fields(body).vm_uuid()
        volume = _data_volume_spec(Fields(body).object("volume"))
        async with self.vm_locks.hold(vm_uuid):
            await self.ctx.backend.vm_attach_volume(cmd.vm_uuid, volume)
        return Ack()

    async def vm_detach_volume(self, body: dict[str, Any], _ctx: CommandContext) -> Ack:
        cmd = parse_request(kvm.DetachVolumeCmd, body)
        vm_uuid = Fields(body).vm_uuid()
        volume = _data_volume_spec(Fields(body).object("volume"))
        async with self.vm_locks.hold(vm_uuid):
            await self.ctx.backend.vm_detach_volume(vm_uuid, volume, cmd.timeout)
        return Ack()
