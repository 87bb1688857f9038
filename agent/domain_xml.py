"""The libvirt domain XML of a VM, built with ElementTree (user values are never spliced
into markup), and the few things read back from a live domain's XML."""

from __future__ import annotations

import contextlib
import uuid
import xml.etree.ElementTree as ET

from agent.backend import DataVolumeSpec, VmSpec, domain_name

DOMAIN_TYPES = {"kvm": "kvm", "tcg": "qemu"}
"""Acceleration -> libvirt domain type."""


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def build_domain_xml(spec: VmSpec, acceleration: str) -> str:
    """The persistent definition of ``zsl-<vmUuid>`` for ``acceleration`` ("kvm" | "tcg")."""
    try:
        domain_type = DOMAIN_TYPES[acceleration]
    except KeyError:
        raise ValueError(f"acceleration must be kvm or tcg, got {acceleration!r}") from None
    root = ET.Element("domain", type=domain_type)
    _sub(root, "name", domain_name(spec.vm_uuid))
    with contextlib.suppress(ValueError):  # not a uuid: libvirt makes one up
        _sub(root, "uuid", str(uuid.UUID(spec.vm_uuid)))
    if spec.vm_name:
        _sub(root, "title", " ".join(spec.vm_name.split()))
    kib = str(max(1, spec.memory_size // 1024))
    _sub(root, "memory", kib, unit="KiB")
    _sub(root, "currentMemory", kib, unit="KiB")
    _sub(root, "vcpu", str(spec.cpu_num), placement="static")
    if spec.smbios_serial:
        # What the guest reads as /sys/class/dmi/id/product_serial (a cloud-init seed).
        sysinfo = _sub(root, "sysinfo", type="smbios")
        _sub(_sub(sysinfo, "system"), "entry", spec.smbios_serial, name="serial")
    os_el = _sub(root, "os")
    _sub(os_el, "type", "hvm", arch="x86_64")
    _sub(os_el, "boot", dev="hd")
    if spec.smbios_serial:
        _sub(os_el, "smbios", mode="sysinfo")
    features = _sub(root, "features")
    _sub(features, "acpi")  # ACPI power button: what a graceful stop presses
    _sub(features, "apic")
    if domain_type == "kvm":
        _sub(root, "cpu", mode="host-passthrough", check="none")
    _sub(root, "clock", offset="utc")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")

    devices = _sub(root, "devices")
    disk = _sub(devices, "disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=spec.root_volume_format)
    _sub(disk, "source", file=spec.root_volume_path)
    _sub(disk, "target", dev="vda", bus="virtio")
    for volume in sorted(spec.data_volumes, key=lambda v: v.device_id):
        devices.append(data_disk(volume))
    for nic in spec.nics:
        interface = _sub(devices, "interface", type="bridge")
        _sub(interface, "mac", address=nic.mac)
        _sub(interface, "source", bridge=nic.bridge_name)
        if nic.virtual_port_type:
            _sub(interface, "virtualport", type=nic.virtual_port_type)
        if nic.vlan_id is not None:
            _sub(_sub(interface, "vlan"), "tag", id=str(nic.vlan_id))
        if nic.device_name:
            _sub(interface, "target", dev=nic.device_name)
        _sub(interface, "model", type="virtio")
    serial = _sub(devices, "serial", type="pty")
    if spec.console_log_path:
        _sub(serial, "log", file=spec.console_log_path, append="on")
    _sub(serial, "target", port="0")
    console = _sub(devices, "console", type="pty")
    _sub(console, "target", type="serial", port="0")
    _sub(devices, "memballoon", model="none")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode")


def data_disk(volume: DataVolumeSpec) -> ET.Element:
    """A data volume's ``<disk>``: virtio ``vd<letter>``, the volume uuid its serial (the
    guest's ``/dev/disk/by-id/virtio-<serial>``)."""
    disk = ET.Element("disk", type="file", device="disk")
    _sub(disk, "driver", name="qemu", type=volume.format)
    _sub(disk, "source", file=volume.install_path)
    _sub(disk, "target", dev=volume.target, bus="virtio")
    _sub(disk, "serial", volume.uuid)
    return disk


def data_disk_xml(volume: DataVolumeSpec) -> str:
    """:func:`data_disk` as the XML ``attachDeviceFlags`` takes."""
    return ET.tostring(data_disk(volume), encoding="unicode")


def disks_of(live_xml: str) -> dict[str, tuple[str, ...]]:
    """target dev -> the chain of files of each file-backed disk of a domain's (live) XML:
    its source, then each ``<backingStore>``'s source, nearest first."""
    found: dict[str, tuple[str, ...]] = {}
    for disk in ET.fromstring(live_xml).findall("./devices/disk"):
        target = disk.find("target")
        if target is None or not target.get("dev"):
            continue
        chain: list[str] = []
        node: ET.Element | None = disk
        while node is not None:
            source = node.find("source")
            if source is None or not source.get("file"):
                break
            chain.append(source.get("file", ""))
            node = node.find("backingStore")
        found[target.get("dev", "")] = tuple(chain)
    return found


def disk_element(live_xml: str, target: str) -> str:
    """The ``<disk>`` of ``target`` in a domain's XML, as XML ("" if none)."""
    for disk in ET.fromstring(live_xml).findall("./devices/disk"):
        found = disk.find("target")
        if found is not None and found.get("dev") == target:
            return ET.tostring(disk, encoding="unicode")
    return ""


def snapshot_xml(disks: list[str], target: str, new_file: str) -> str:
    """A disk-only external snapshot of ``target`` onto ``new_file`` (which exists: libvirt
    is told to reuse it); every other disk of the domain ``snapshot='no'``."""
    root = ET.Element("domainsnapshot")
    element = _sub(root, "disks")
    for dev in disks:
        if dev == target:
            disk = _sub(element, "disk", name=dev, snapshot="external", type="file")
            _sub(disk, "source", file=new_file)
            _sub(disk, "driver", type="qcow2")
        else:
            _sub(element, "disk", name=dev, snapshot="no")
    return ET.tostring(root, encoding="unicode")


def console_of(live_xml: str) -> tuple[str, str]:
    """``(pty path, console log path)`` of a running domain's serial console ("" if none)."""
    root = ET.fromstring(live_xml)
    pty = ""
    for xpath in ("./devices/console[@type='pty']/source", "./devices/serial[@type='pty']/source"):
        source = root.find(xpath)
        if source is not None and source.get("path"):
            pty = source.get("path", "")
            break
    log = root.find("./devices/serial/log")
    return pty, (log.get("file", "") if log is not None else "")
