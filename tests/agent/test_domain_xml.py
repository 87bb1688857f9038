"""The domain XML builder, checked by parsing what it builds."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from agent.backend import DataVolumeSpec, NicSpec, VmSpec
from agent.domain_xml import (
    build_domain_xml,
    console_of,
    data_disk_xml,
    disk_element,
    disks_of,
    snapshot_xml,
)

UUID = "0123456789abcdef0123456789abcdef"


def spec(**overrides: object) -> VmSpec:
    values: dict[str, object] = {
        "vm_uuid": UUID,
        "vm_name": "db </name><evil/> & 'x'",
        "cpu_num": 2,
        "memory_size": 512 * 1024**2,
        "root_volume_path": "/var/lib/zsl/vol & co/root.qcow2",
        "nics": (
            NicSpec("52:54:00:aa:bb:01", "br-l3", "vnic7.0"),
            NicSpec("52:54:00:aa:bb:02", "br-pub", ""),
        ),
        "console_log_path": "/var/log/zsl/console.log",
    }
    values.update(overrides)
    return VmSpec(**values)  # type: ignore[arg-type]


def parse(s: VmSpec, acceleration: str = "tcg") -> ET.Element:
    return ET.fromstring(build_domain_xml(s, acceleration))


@pytest.mark.parametrize(("acceleration", "domain_type"), [("kvm", "kvm"), ("tcg", "qemu")])
def test_domain_type_follows_the_acceleration(acceleration: str, domain_type: str) -> None:
    root = parse(spec(), acceleration)
    assert root.get("type") == domain_type
    assert (root.find("cpu") is not None) == (acceleration == "kvm")


def test_name_resources_and_lifecycle_actions() -> None:
    root = parse(spec())
    assert root.findtext("name") == f"zsl-{UUID}"
    assert root.findtext("uuid") == "01234567-89ab-cdef-0123-456789abcdef"
    assert root.findtext("title") == "db </name><evil/> & 'x'"  # kept as text, not markup
    assert root.find("memory").get("unit") == "KiB"  # type: ignore[union-attr]
    assert root.findtext("memory") == str(512 * 1024)
    assert root.findtext("vcpu") == "2"
    assert root.findtext("os/type") == "hvm"
    assert root.find("os/boot").get("dev") == "hd"  # type: ignore[union-attr]
    assert root.find("features/acpi") is not None
    assert root.findtext("on_poweroff") == "destroy"
    assert root.findtext("on_reboot") == "restart"
    assert root.findtext("on_crash") == "destroy"
    assert root.find("devices/graphics") is None


def test_disk_nics_serial_and_console() -> None:
    devices = parse(spec()).find("devices")
    assert devices is not None
    (disk,) = devices.findall("disk")
    assert disk.find("driver").attrib == {"name": "qemu", "type": "qcow2"}  # type: ignore[union-attr]
    assert disk.find("source").get("file") == "/var/lib/zsl/vol & co/root.qcow2"  # type: ignore[union-attr]
    assert disk.find("target").attrib == {"dev": "vda", "bus": "virtio"}  # type: ignore[union-attr]

    nics = devices.findall("interface")
    assert [n.get("type") for n in nics] == ["bridge", "bridge"]
    assert [n.find("mac").get("address") for n in nics] == [  # type: ignore[union-attr]
        "52:54:00:aa:bb:01",
        "52:54:00:aa:bb:02",
    ]
    assert [n.find("source").get("bridge") for n in nics] == ["br-l3", "br-pub"]  # type: ignore[union-attr]
    assert [n.find("model").get("type") for n in nics] == ["virtio", "virtio"]  # type: ignore[union-attr]
    assert nics[0].find("target").get("dev") == "vnic7.0"  # type: ignore[union-attr]
    assert nics[1].find("target") is None  # libvirt names it

    serial = devices.find("serial")
    assert serial is not None and serial.get("type") == "pty"
    assert serial.find("log").attrib == {"file": "/var/log/zsl/console.log", "append": "on"}  # type: ignore[union-attr]
    console = devices.find("console")
    assert console is not None and console.get("type") == "pty"


def test_no_nics_and_no_console_log() -> None:
    devices = parse(spec(nics=(), console_log_path="", vm_uuid="not-a-uuid")).find("devices")
    assert devices is not None
    assert devices.findall("interface") == []
    assert devices.find("serial/log") is None
    root = parse(spec(vm_uuid="not-a-uuid"))
    assert root.find("uuid") is None
    assert root.findtext("name") == "zsl-not-a-uuid"


def test_unknown_acceleration_is_refused() -> None:
    with pytest.raises(ValueError, match="kvm or tcg"):
        build_domain_xml(spec(), "hvf")


def test_console_of_a_live_domain() -> None:
    live = """<domain type='qemu'><devices>
      <serial type='pty'><source path='/dev/pts/7'/><log file='/l/c.log' append='on'/>
        <target port='0'/></serial>
      <console type='pty' tty='/dev/pts/7'><source path='/dev/pts/7'/>
        <target type='serial' port='0'/></console></devices></domain>"""
    assert console_of(live) == ("/dev/pts/7", "/l/c.log")
    assert console_of("<domain><devices/></domain>") == ("", "")


PLAIN_KVM_XML = (
    '<domain type="kvm">\n'
    "  <name>zsl-0123456789abcdef0123456789abcdef</name>\n"
    "  <uuid>01234567-89ab-cdef-0123-456789abcdef</uuid>\n"
    "  <title>db &lt;/name&gt;&lt;evil/&gt; &amp; 'x'</title>\n"
    '  <memory unit="KiB">524288</memory>\n'
    '  <currentMemory unit="KiB">524288</currentMemory>\n'
    '  <vcpu placement="static">2</vcpu>\n'
    "  <os>\n"
    '    <type arch="x86_64">hvm</type>\n'
    '    <boot dev="hd" />\n'
    "  </os>\n"
    "  <features>\n"
    "    <acpi />\n"
    "    <apic />\n"
    "  </features>\n"
    '  <cpu mode="host-passthrough" check="none" />\n'
    '  <clock offset="utc" />\n'
    "  <on_poweroff>destroy</on_poweroff>\n"
    "  <on_reboot>restart</on_reboot>\n"
    "  <on_crash>destroy</on_crash>\n"
    "  <devices>\n"
    '    <disk type="file" device="disk">\n'
    '      <driver name="qemu" type="qcow2" />\n'
    '      <source file="/var/lib/zsl/vol &amp; co/root.qcow2" />\n'
    '      <target dev="vda" bus="virtio" />\n'
    "    </disk>\n"
    '    <interface type="bridge">\n'
    '      <mac address="52:54:00:aa:bb:01" />\n'
    '      <source bridge="br-l3" />\n'
    '      <target dev="vnic7.0" />\n'
    '      <model type="virtio" />\n'
    "    </interface>\n"
    '    <interface type="bridge">\n'
    '      <mac address="52:54:00:aa:bb:02" />\n'
    '      <source bridge="br-pub" />\n'
    '      <model type="virtio" />\n'
    "    </interface>\n"
    '    <serial type="pty">\n'
    '      <log file="/var/log/zsl/console.log" append="on" />\n'
    '      <target port="0" />\n'
    "    </serial>\n"
    '    <console type="pty">\n'
    '      <target type="serial" port="0" />\n'
    "    </console>\n"
    '    <memballoon model="none" />\n'
    "  </devices>\n"
    "</domain>"
)
"""What :func:`spec` builds for kvm: NICs without a virtual port stay exactly as before."""


def test_plain_nics_build_the_same_xml_as_ever() -> None:
    assert build_domain_xml(spec(), "kvm") == PLAIN_KVM_XML


def test_a_virtual_port_nic_has_its_virtualport_and_vlan() -> None:
    nics = (
        NicSpec("52:54:00:aa:bb:01", "zslovs-a1", "zslt0123456780", "openvswitch", 42),
        NicSpec("52:54:00:aa:bb:02", "zslovs-a1", "zslt0123456781", "openvswitch"),
        NicSpec("52:54:00:aa:bb:03", "zslbr-a1", "zslt0123456782"),
    )
    tagged, untagged, plain = parse(spec(nics=nics)).findall("devices/interface")
    assert tagged.get("type") == "bridge"
    assert tagged.find("source").attrib == {"bridge": "zslovs-a1"}  # type: ignore[union-attr]
    assert tagged.find("virtualport").attrib == {"type": "openvswitch"}  # type: ignore[union-attr]
    assert [t.attrib for t in tagged.findall("vlan/tag")] == [{"id": "42"}]
    assert tagged.find("vlan").attrib == {}  # type: ignore[union-attr]  # an access port, not a trunk
    assert tagged.find("target").get("dev") == "zslt0123456780"  # type: ignore[union-attr]
    assert untagged.find("virtualport").get("type") == "openvswitch"  # type: ignore[union-attr]
    assert untagged.find("vlan") is None
    assert plain.find("virtualport") is None and plain.find("vlan") is None
    assert [child.tag for child in tagged] == [
        "mac",
        "source",
        "virtualport",
        "vlan",
        "target",
        "model",
    ]


SEED = "ds=nocloud-net;s=http://169.254.169.254/nocloud/"


def test_without_an_smbios_serial_the_domain_has_no_sysinfo() -> None:
    text = build_domain_xml(spec(), "tcg")
    assert "sysinfo" not in text and "smbios" not in text


def test_an_smbios_serial_is_the_system_serial_and_nothing_else_changes() -> None:
    plain = build_domain_xml(spec(), "tcg")
    text = build_domain_xml(spec(smbios_serial=SEED), "tcg")
    assert (
        '  <sysinfo type="smbios">\n'
        "    <system>\n"
        f'      <entry name="serial">{SEED}</entry>\n'
        "    </system>\n"
        "  </sysinfo>\n"
        "  <os>\n"
        '    <type arch="x86_64">hvm</type>\n'
        '    <boot dev="hd" />\n'
        '    <smbios mode="sysinfo" />\n'
        "  </os>\n"
    ) in text
    root = ET.fromstring(text)
    root.remove(root.find("sysinfo"))  # type: ignore[arg-type]
    os_el = root.find("os")
    assert os_el is not None
    os_el.remove(os_el.find("smbios"))  # type: ignore[arg-type]
    ET.indent(root)
    assert ET.tostring(root, encoding="unicode") == plain


def test_an_smbios_serial_is_text_not_markup() -> None:
    hostile = "a</entry><evil/>&'\""
    root = parse(spec(smbios_serial=hostile))
    assert root.findtext("sysinfo/system/entry[@name='serial']") == hostile
    assert root.find(".//evil") is None


def _start_body(**extra: object) -> dict[str, object]:
    return {
        "vmUuid": "vm-1",
        "cpuNum": 1,
        "memorySize": 64 * 1024**2,
        "rootVolume": {"installPath": "/var/lib/zsl/root.qcow2"},
        **extra,
    }


def test_the_agent_reads_the_smbios_serial_and_refuses_what_is_not_printable() -> None:
    from agent.fields import Fields
    from agent.plugins.vm import vm_spec
    from agentkit.errors import ArgumentError

    assert vm_spec(Fields(_start_body())).smbios_serial == ""
    assert vm_spec(Fields(_start_body(smbiosSerial=SEED))).smbios_serial == SEED
    for bad in ("a\nb", "é", "x" * 1025):
        with pytest.raises(ArgumentError, match="field 'smbiosSerial' must be printable ASCII"):
            vm_spec(Fields(_start_body(smbiosSerial=bad)))


def test_the_contract_refuses_a_serial_that_is_not_printable() -> None:
    from contracts import kvm

    cmd = kvm.StartVmCmd(
        vm_uuid="v", cpu_num=1, memory_size=1, root_volume=kvm.VolumeTO(install_path="/r")
    )
    assert cmd.to_json()["smbiosSerial"] == ""
    with pytest.raises(ValueError, match="smbios"):
        kvm.StartVmCmd(
            vm_uuid="v",
            cpu_num=1,
            memory_size=1,
            root_volume=kvm.VolumeTO(install_path="/r"),
            smbios_serial="a\x00b",
        )


def test_data_volumes_are_virtio_disks_after_the_root_with_their_uuid_as_serial() -> None:
    volumes = (
        DataVolumeSpec("vol-c", "/ps/datavolumes/vol-c/c & d.qcow2", 3),
        DataVolumeSpec("vol-b", "/ps/datavolumes/vol-b/b.raw", 1, "raw"),
    )
    root = parse(spec(data_volumes=volumes))
    disks = root.findall("devices/disk")
    assert [d.find("target").get("dev") for d in disks] == ["vda", "vdb", "vdd"]  # type: ignore[union-attr]
    vdb = disks[1]
    assert vdb.get("type") == "file" and vdb.get("device") == "disk"
    assert vdb.find("driver").attrib == {"name": "qemu", "type": "raw"}  # type: ignore[union-attr]
    assert vdb.find("source").get("file") == "/ps/datavolumes/vol-b/b.raw"  # type: ignore[union-attr]
    assert vdb.find("target").attrib == {"dev": "vdb", "bus": "virtio"}  # type: ignore[union-attr]
    assert vdb.findtext("serial") == "vol-b"
    assert disks[2].find("source").get("file") == "/ps/datavolumes/vol-c/c & d.qcow2"  # type: ignore[union-attr]
    # Without data volumes the XML is what it always was.
    assert build_domain_xml(spec(data_volumes=()), "tcg") == build_domain_xml(spec(), "tcg")


def shape(element: ET.Element) -> tuple[object, ...]:
    """An element's tag, attributes, text and children, without the indentation."""
    text = (element.text or "").strip()
    return (element.tag, element.attrib, text, [shape(child) for child in element])


def test_a_hot_plugged_disk_is_the_same_element_and_the_live_chain_is_read_back() -> None:
    volume = DataVolumeSpec("vol-x", "/ps/datavolumes/vol-x/top.qcow2", 2)
    plugged = ET.fromstring(data_disk_xml(volume))
    started = parse(spec(data_volumes=(volume,))).findall("devices/disk")[1]
    assert shape(plugged) == shape(started)
    live = """<domain><devices>
      <disk type='file' device='disk'><source file='/ps/r.qcow2'/>
        <backingStore type='file'><source file='/ps/base.qcow2'/><backingStore/></backingStore>
        <target dev='vda' bus='virtio'/></disk>
      <disk type='file' device='disk'><source file='/ps/top.qcow2'/>
        <backingStore type='file'><source file='/ps/mid.qcow2'/>
          <backingStore type='file'><source file='/ps/low.qcow2'/></backingStore>
        </backingStore><target dev='vdc' bus='virtio'/></disk>
      <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/></disk>
    </devices></domain>"""
    assert disks_of(live) == {
        "vda": ("/ps/r.qcow2", "/ps/base.qcow2"),
        "vdc": ("/ps/top.qcow2", "/ps/mid.qcow2", "/ps/low.qcow2"),
        "hdc": (),
    }
    assert 'dev="vdc"' in disk_element(live, "vdc") and disk_element(live, "vdb") == ""
    snap = ET.fromstring(snapshot_xml(list(disks_of(live)), "vdc", "/ps/new.qcow2"))
    assert [(d.get("name"), d.get("snapshot")) for d in snap.findall("disks/disk")] == [
        ("vda", "no"),
        ("vdc", "external"),
        ("hdc", "no"),
    ]
    external = snap.find("disks/disk[@name='vdc']")
    assert external.find("source").get("file") == "/ps/new.qcow2"  # type: ignore[union-attr]
    assert external.find("driver").get("type") == "qcow2"  # type: ignore[union-attr]
