"""The KVM host agent's HTTP contract, in ZStack kvmagent's shape.

The envelope, authentication, asynchronous commands (marked ASYNC below) and what a crash
means for a caller are :mod:`contracts.envelope`'s.  The token lives in the agent's data
dir (:data:`TOKEN_FILE`); the core reads the same file for a local agent.

Reports (agent -> core): the agent POSTs to ``<reportUrl><path>`` (the URL
given at host connect) with the bearer token:

* ``REPORT_VM_STATE`` ``{hostUuid, vmUuid, vmState}`` whenever a domain the
  project owns changes state (libvirt lifecycle events), including changes made
  outside the project (``virsh destroy``);
* ``REPORT_PROGRESS`` ``{taskUuid, stage, progress, total}`` during image downloads.

Field names are ZStack's camelCase.  States are ZStack's: ``Running``,
``Stopped``, ``Paused``, ``Crashed``, ``Unknown``.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import Field

from contracts.base import Ack, Reply, Report, Request, Wire

AGENT_PORT: Final = 7070
TOKEN_FILE: Final = "agent.token"
DOMAIN_PREFIX: Final = "zsl-"
"""Every libvirt domain the project owns is named ``zsl-<vmUuid>``; nothing else is touched."""

# -- host -------------------------------------------------------------------
HOST_CONNECT: Final = "/host/connect"
"""{hostUuid, reportUrl} -> {hostUuid, hostname, libvirtVersion, qemuImgVersion,
cpuNum, cpuSockets, cpuModelName, cpuFlags: [str], totalMemory (bytes),
acceleration: "kvm"|"tcg", hypervisorType: "KVM"|"Simulator"}.
``acceleration`` comes from a real boot probe (a tiny KVM guest must reach its
first instruction within a timeout), never from /dev/kvm existing; the result
is cached for the agent's lifetime."""

HOST_PING: Final = "/host/ping"
"""{hostUuid} -> {hostUuid}: the uuid given at the last connect ("" after an agent
restart, so the core notices and reconnects)."""

HOST_CAPACITY: Final = "/host/capacity"
"""{} -> {cpuNum, totalMemory, usedMemory (bytes, by host programs), freeMemory}."""

# -- VMs ---------------------------------------------------------------------
VM_START: Final = "/vm/start"
"""ASYNC {vmUuid, vmName, cpuNum, memorySize (bytes), rootVolume: {installPath,
format}, nics: [NicTO], consoleLogPath, acceleration, timeout (s)} -> {vmUuid,
state}.  Defines (or redefines) the domain ``zsl-<vmUuid>`` and starts it; idempotent
for a running domain.  Each NIC is a virtio ``<interface type='bridge'>`` on
``bridgeName`` (a project bridge: ``zslbr-…`` for a Linux bridge port, any ``zsl`` name
for a virtual port) whose tap is ``deviceName`` (required, ``zsl``-prefixed, at most 15
characters, chosen by the core, e.g. ``zslt<9 hex><n>``); with ``virtualPortType`` a
``<virtualport>`` of that type (libvirt plugs the tap), with ``vlanId`` an access port
of that VLAN.  The root volume's chain is checked before QEMU opens it: in a primary
storage's ``rootvolumes/vm-<uuid>/`` it is read as every volume chain below (the active
file may stand on the volume's snapshot files, in that directory, down to one standalone
image of that storage's ``imagecache/``, a raw one with an MBR/GPT signature); a file
elsewhere may only be an overlay on a standalone image."""

VM_STOP: Final = "/vm/stop"
"""ASYNC {vmUuid, type: "grace"|"cold"|"force", timeout (s)} -> {vmUuid, state}.
grace: ACPI shutdown, waiting up to ``timeout``, then destroy; cold: destroy
(power off); force: destroy without waiting for anything.  The domain stays
defined.  Stopping a stopped domain succeeds."""

VM_REBOOT: Final = "/vm/reboot"
"""ASYNC {vmUuid, timeout} -> {vmUuid, state}."""

VM_PAUSE: Final = "/vm/pause"
"""{vmUuid} -> {vmUuid, state}."""

VM_RESUME: Final = "/vm/resume"
"""{vmUuid} -> {vmUuid, state}."""

VM_DESTROY: Final = "/vm/destroy"
"""ASYNC {vmUuid} -> {vmUuid}: power off and undefine; succeeds if it does not exist."""

VM_EXPUNGE: Final = "/vm/expunge"
"""{vmUuid, consoleLogPath} -> {}: remove what a VM gone for good left on the host: its
serial console log and virtlogd's rotated copies of it (``<log>.0``…).  The log must be
the VM's own (file name ``<vmUuid>.log``); refused while the VM has a domain; missing
files are fine."""

VM_SYNC: Final = "/vm/vmsync"
"""{} -> {states: {vmUuid: state}} for every domain the project owns."""

VM_CONSOLE: Final = "/vm/console"
"""{vmUuid} -> {vmUuid, pty, consoleLogPath}: the serial console's pty and its log file."""

VM_CONSOLE_STREAM: Final = "/vm/console/stream"
"""``GET ?vmUuid=<uuid>``, a websocket (the same bearer token; 401 before the upgrade
without it): the VM's serial console, both ways.  The agent's first frame is text, JSON:
``{"type": "opened", "vmUuid", "consoleLogPath", "history": <bytes>}``, then ``history``
bytes of the console log's tail (at most :data:`CONSOLE_HISTORY_BYTES`, from a line
start) in binary frames, then the live output in binary frames.  The viewer's binary
(or text, UTF-8) frames are typed into the console.  A console that cannot be opened
(no such VM, VM not running, bad vmUuid) is answered ``{"type": "error", "error":
"<message>"}`` and closed with :data:`CONSOLE_CLOSE_FAILED`.  Close codes say why a
console ended; the close reason is the message.  One viewer per VM: opening the console
again takes it over (the previous viewer is closed with
:data:`CONSOLE_CLOSE_TAKEN_OVER`)."""

CONSOLE_HISTORY_BYTES: Final = 16 * 1024
CONSOLE_CLOSE_NORMAL: Final = 1000
"""The console ended (the VM stopped) or the viewer closed it."""
CONSOLE_CLOSE_GOING_AWAY: Final = 1001
"""The agent (or the management node relaying) is stopping."""
CONSOLE_CLOSE_FAILED: Final = 4000
"""The console could not be opened, or failed; the reason says why."""
CONSOLE_CLOSE_TAKEN_OVER: Final = 4001
"""Another viewer opened this VM's console."""

# -- volumes and images ------------------------------------------------------
VOLUME_CREATE: Final = "/volume/create"
"""{installPath, backingFile, format: "qcow2", size (bytes, 0 = the backing size)}
-> {installPath, actualSize, size}: a qcow2 overlay (mode 0600) on a cached image, which
must be standalone (no backing or data file of its own).  Written beside the target
(``.<name>.creating``) and linked into place when whole, never over an existing file.  A
volume already at ``installPath`` with that backing file and size is answered as made (a
repeat); any other file there is refused."""

VOLUME_DELETE: Final = "/volume/delete"
"""{installPath, storagePath, keepIfBacking: [str]} -> {}: succeeds if the file does not
exist.  What a creation or download to that path cut short left (``.<name>.creating``,
``.<name>.part``) goes too, and so does the directory it was in when that is a volume's
directory (``vm-<vmUuid>``, ``vol-<volumeUuid>``) left empty.  With ``keepIfBacking``, the
file is deleted only if no chain of those files holds it (each followed through the files'
qcow2 headers, checked as below; no ``qemu-img`` run), and is refused otherwise, naming
the file that stands on it; so is (whenever ``storagePath`` or ``keepIfBacking`` is given)
a file a running domain's disk reads.  A listed file whose chain the agent refuses to read
(see below) refuses the delete too."""

IMAGE_DOWNLOAD: Final = "/image/download"
"""ASYNC {url (http(s) or file path), installPath, checksum ("sha256:<hex>"|"md5:<hex>"|""),
taskUuid, stallTimeout (s, > 0, default :data:`DEFAULT_STALL_TIMEOUT`)} -> {installPath,
format, size (virtual), actualSize, md5sum}: refuses a declared size (Content-Length, a
local file's size) larger than the free space before writing anything; fetches to a
temporary file beside ``installPath`` (failing when nothing arrives for ``stallTimeout``
seconds), checks the checksum, then the format: the header first (a qcow2 naming a
backing or external data file, encrypted or with an unusual feature, and other formats
than qcow2, raw and iso are refused), then ``qemu-img info``; then links it into place
(mode 0600).  On any failure, or when cancelled (``contracts.envelope.TASK_CANCEL``),
nothing is left.
The temporary file is ``.<name>.part`` (one per target): a repeat after the agent died
overwrites it and :data:`FILE_DELETE` of the target removes it, and a file at
``installPath`` is always a finished download.  A target that exists already is checked
again (the checksum if given, the format) and answered (a repeat whose answer was lost);
anything else there is refused."""

DEFAULT_STALL_TIMEOUT: Final = 60.0

IMAGE_INFO: Final = "/image/info"
"""{installPath} -> {format, size, actualSize}: ``qemu-img info`` of a file."""

FILE_DELETE: Final = "/file/delete"
"""{path} -> {}: delete a file the project made (image cache, volume) and what a download or
volume creation to it cut short left (``.<name>.part``, ``.<name>.creating``); missing is
fine."""

STORAGE_INIT: Final = "/storage/init"
"""{path} -> {path, totalCapacity, availableCapacity} (bytes): make a storage
directory if missing (idempotent) and measure its file system."""

# -- data volumes, snapshots, resize, images from volumes --------------------------
# A volume's files form a qcow2 backing chain (snapshots below, the active file on top),
# every file on one primary storage directory ``storagePath``: the agent refuses a chain
# (as ``qemu-img info --backing-chain`` reads it) with a file outside that directory and
# outside its ``imagecache`` (an image file is hostile: its header names no host file).
# A volume attached to a VM is the disk ``vd<letter of deviceId>`` (0 the root ``vda``,
# 1 ``vdb``...); "live" below means the VM's domain is running (or paused), and then the
# agent works through libvirt (QEMU holds the files); otherwise with ``qemu-img``.
VM_ATTACH_VOLUME: Final = "/vm/volume/attach"
"""{vmUuid, volume: DataVolumeTO} -> {}: hot-plug the data volume into the running
domain (libvirt ``attachDeviceFlags(AFFECT_LIVE)``, and ``AFFECT_CONFIG`` too, so that
VM_REBOOT, which starts the domain again from its definition, keeps it; the DB, not
libvirt, keeps the VM's disks: VM_START gets them all and redefines the domain; VM_DETACH_VOLUME
likewise removes the disk from both).  A domain that is not running: nothing to do.  Already
attached (the same file at that target): nothing to do; another file there is refused.
The volume's chain is checked first, as every chain below, on the primary storage its
path names (``<storagePath>/datavolumes/...``); so are VM_START's ``dataVolumes``."""

VM_DETACH_VOLUME: Final = "/vm/volume/detach"
"""{vmUuid, volume: DataVolumeTO, timeout (s)} -> {}: unplug the data volume from the
running domain and wait (``timeout``) until QEMU let it go (the guest must answer the
ACPI eject; failing that, an error saying so, and the disk stays).  Not there: nothing;
another file at that target is refused."""

VOLUME_SNAPSHOT: Final = "/volume/snapshot"
"""{vmUuid, deviceId, storagePath, installPath, newInstallPath, full} -> {installPath,
newInstallPath, size, actualSize}: the volume's active file ``installPath`` becomes a
snapshot (never written again) and a new qcow2 overlay ``newInstallPath`` on it the active
file.  Live: the overlay is made first, then ``snapshotCreateXML`` (external, disk-only,
no metadata, reuse-ext) switches the disk to it (consistent for the guest, who goes on
writing; QEMU flushes the old active file as it reopens it read-only, so the snapshot's
file reads on disk, when the answer comes, what the guest wrote: checked on QEMU 7.2 with
``qemu-img convert -U`` of a cluster first written just before); otherwise ``qemu-img
create``.  ``full``: the active file is first made standalone (its chain pulled into it:
``blockRebase`` with no base live, ``qemu-img rebase -b ""`` otherwise), so the snapshot
starts a new chain.  Idempotent: a repeat finding the disk already on ``newInstallPath``
over ``installPath`` answers as made (an overlay a cut-short attempt left at
``newInstallPath`` is used).  ``newInstallPath`` must be under ``storagePath``; offline, a
file a running domain reads is refused."""

VOLUME_REBASE: Final = "/volume/rebase"
"""{vmUuid, deviceId, storagePath, installPath, backingFile} -> {installPath,
backingFile}: make ``installPath`` stand on ``backingFile`` (a file of its chain below its
current backing file, or "" for none) without changing what it reads: the data of the
files skipped is copied into it first.  Live when ``installPath`` is the running disk's
active file (``blockRebase`` with that base, waited for; a job already running for the
disk is waited for; then QEMU is made to flush the file, so that the data pulled in is on
the disk, qcow2 metadata included, before the answer: without it QEMU 7.2 keeps the new L2
entries in its cache and the file on disk reads zeros there until a guest flush, while the
core deletes the skipped files.  HMP ``qemu-io <node> "flush"``, else a pause and resume
of a running domain: see agent.libvirt_backend ``_flush_disk``); otherwise ``qemu-img
rebase`` (safe mode) on a file no running domain uses (a file of a running disk's chain
that is not its active file is refused).  Idempotent: a file already on ``backingFile``
answers at once."""

VOLUME_RESIZE: Final = "/volume/resize"
"""{vmUuid, deviceId, storagePath, installPath, size} -> {size}: grow the volume's virtual
size to ``size`` bytes (live ``blockResize``, whose qcow2 header update QEMU writes
synchronously: the size on disk is the new one at the answer; else ``qemu-img resize``); a
size smaller than the current one is refused, the same size is fine.  Offline, a file a
running domain reads is refused (live, a backing file of the running disk)."""

VOLUME_CHAIN: Final = "/volume/chain"
"""{storagePath, installPaths: [str]} -> {chains: {path: [backing files, nearest first]}}:
each file's backing chain (``qemu-img info --backing-chain --force-share``); a missing
file is answered with an empty chain and listed in ``missing``."""

VOLUME_EXPORT: Final = "/volume/export"
"""ASYNC {storagePath, installPath, targetPath, taskUuid} -> {installPath, format, size,
actualSize, md5sum}: a standalone qcow2 copy of what ``installPath`` reads (its chain
flattened: ``qemu-img convert -O qcow2``), written to a temporary file beside
``targetPath`` (a backup storage's) and linked into place when whole, with
REPORT_PROGRESS (stage "export").  The source must not be written meanwhile (the core
exports a stopped VM's volume or a snapshot's file): the active file of a running disk is
refused.  A repeat finding a standalone qcow2 at ``targetPath`` answers it (with its md5).
Cancelled or failed: nothing left."""

# -- networking ----------------------------------------------------------------
# Everything the project makes on a host is named ``zsl…`` and fits IFNAMSIZ (15
# characters).  The core picks bridge names, ``zslbr-<9 hex>``; the agent refuses
# any other name, and never changes an interface it did not make or was not given.
BRIDGE_CREATE: Final = "/network/bridge/create"
"""{bridgeName, physicalInterface: "", allowDefaultRouteInterface: false} -> {bridgeName}:
idempotent.  Makes the Linux bridge (up).  ``physicalInterface``, if given, must exist
and is enslaved (and set up); refused when it carries the host's default route
(unless ``allowDefaultRouteInterface``), is a bridge, or already has another master.
A name taken by a link that is not a bridge is refused."""

BRIDGE_DELETE: Final = "/network/bridge/delete"
"""{bridgeName} -> {}: releases (never deletes) the interfaces the project did not make,
then deletes the bridge; a missing bridge is fine."""

BRIDGE_CHECK: Final = "/network/bridge/check"
"""{bridgeNames: [str]} -> {missing: [str]}: the names that are not bridges on this host
(for host reconnect)."""

HOSTNAT_SET: Final = "/network/hostnat/set"
"""{bridgeName, gatewayCidr ("10.0.0.1/24")} -> {}: host NAT for the default public
network on an isolated bridge.  Puts the gateway address on the bridge, enables IPv4
forwarding, and rewrites (one ``nft -f -`` transaction) this agent's lab's rules in the
shared table ``inet zsl_host_nat`` (other labs' rules stay): a ``forward`` filter chain
accepting traffic from and to the public bridges, a ``postrouting`` nat chain
masquerading each public CIDR leaving through any other interface, and an ``input``
filter chain dropping what the bridge's guests send to the host itself (but replies
to the host's own connections).  A CIDR overlapping a host route on another interface
is refused, naming the route.  Idempotent; setting an entry again repairs its address
and rules.  Limitation: a packet must be accepted by every base chain on the forward
hook, so another table that drops forwarded traffic (Docker's FORWARD policy drop)
still drops it; see agent.network.host_nat."""

HOSTNAT_REMOVE: Final = "/network/hostnat/remove"
"""{bridgeName, gatewayCidr} -> {}: the entry's rules of this lab and the gateway address
go; the table goes with the last rule of any lab.  A missing entry is fine."""

HOST_ROUTES: Final = "/network/routes"
"""{} -> {routes: [{destination: "10.1.0.0/24", interface: "eth0", gateway: "" or
"10.1.0.1"}]}: the host's IPv4 routes in the main table but the default ones
(destination 0.0.0.0/0), in the kernel's order, so the core can refuse an IP range
overlapping one.  ``interface`` is the outgoing interface's name ("" for none: a
blackhole, unreachable or prohibit route); ``gateway`` the next hop ("" for an on-link
route).  A multipath route is listed once per next hop.  Every route is listed, the
link routes of the project's own bridges included: the core decides what to ignore.
On a simulator host the routes are the networks of its host NAT gateways, on their
bridges."""

APPLIANCE_CREATE: Final = "/appliance/create"
"""{applianceUuid, nics: [ApplianceNicTO], defaultGateway: ""} -> {namespace, socketPath,
tokenFile, agentPid}.  Makes the namespace ``zsl-vr-<first 9 hex of the uuid>``; per NIC
``n`` a veth pair whose host end ``zslv<9 hex><n>`` is enslaved to the bridge (or, with a
``virtualPortType``, plugged into it by the agent plugin serving that type, tagged with
``vlanId``) and whose other end is ``eth<n>`` in
the namespace with the MAC and ``ip/prefixLength``; ``lo`` up; a default route via
``defaultGateway`` (which must lie in a public NIC's network) if given.  Then starts
the virtual-router agent inside the namespace (``ip netns exec <ns> python -m
virtual_router.main --socket <dir>/agent.sock --data-dir <dir> --token-file
<dir>/agent.token``, ``<dir>`` = ``<agent data dir>/appliances/<applianceUuid>``,
0700; the token (0600) is written before the start) and waits for its socket.
Idempotent: makes what is missing (a veth, a dead agent), leaves the rest.  On a
failure what the call made is undone and the error names the failed step.  On a
simulator host the agent runs without a namespace, with ``--simulate``, in the same
directory layout."""

APPLIANCE_DESTROY: Final = "/appliance/destroy"
"""{applianceUuid} -> {}: ends every process in the namespace (SIGTERM, then SIGKILL),
deletes the veths, the namespace and the directory; missing pieces are fine."""

APPLIANCE_CHECK: Final = "/appliance/check"
"""{applianceUuid} -> {namespace: bool, agentRunning: bool, missingNics: [mac]}: a NIC
is missing when its veth pair, its MAC or its bridge port is gone."""

# -- reconciliation ------------------------------------------------------------
LAB_INVENTORY: Final = "/lab/inventory"
"""{storagePaths: [str]} -> {lab, objects: [{kind, name, ref, detail}]}: every object of
this agent's lab on the host, found by the lab's identity as a reset's sweep finds it
(agent.lab_inventory): kinds ``domain``, ``process`` (router agents, dnsmasq and host
agents, never the node nor this agent), ``namespace``, ``veth``, ``tap``, ``hostNat``
(name ``<bridge> <gatewayCidr>``), ``bridge``, ``file`` (under ``storagePaths``, the
primary storage directories of the host, only those under the lab's data dir: VM volume
directories ``rootvolumes/vm-<uuid>``, ``imagecache/*``, ``consoles/*``).  ``ref`` is what
the core compares with its database (a VM uuid, a router's short id or uuid, a bridge
name, an image uuid, an agent's directory).  A simulator host lists its simulated objects
(domains, bridges, host NAT, routers as namespaces) and files."""

LAB_OBJECT_KINDS: Final = (
    "domain", "process", "namespace", "veth", "tap", "hostNat", "nftTable", "bridge", "file"
)  # fmt: skip
"""The kinds LAB_INVENTORY lists, in the order removals go: what holds an object goes
before it (a domain holds its taps and disks, a namespace its processes and veths, a tap
marks itself the lab's by its bridge).  An ``nftTable`` (``<family> <name>``) is a table
the lab owns alone (contracts.names.lab_table_name), whichever plugin made it."""

LAB_REMOVE: Final = "/lab/remove"
"""{objects: [{kind, name}], storagePaths: [str]} -> {removed: [{kind, name, ref,
detail}], refused: [{kind, name, error}], failures: [{kind, name, error}]}: remove the
named objects (orphans the core found), each only if it is this lab's now (listed as
LAB_INVENTORY lists it): anything else (another lab's, gone) is refused, untouched.  A
namespace goes with its processes, veths, router directory, dnsmasq run dir and socket;
a domain with libvirt's log of it; a host NAT entry with its gateway address."""

# -- reports (agent -> core) --------------------------------------------------
REPORT_VM_STATE: Final = "/kvm/reportvmstate"
REPORT_PROGRESS: Final = "/kvm/reportprogress"

NOT_COMMANDS: Final = frozenset({REPORT_VM_STATE, REPORT_PROGRESS, VM_CONSOLE_STREAM})
"""The paths above that no command has: reports go from the agent to the core, and the
console is a websocket."""

VM_STATES: Final = ("Running", "Stopped", "Paused", "Crashed", "Unknown")


# -- typed commands, in the order above ---------------------------------------------
# Each is ZStack's ``<Verb><Noun>Cmd`` and its ``…Rsp``; the prose above says what the
# agent does with it.


Acceleration = Literal["kvm", "tcg"]
"""How the host runs guests: hardware virtualisation, or QEMU's TCG (a real boot probe
decides, never /dev/kvm's existence)."""


class HostFactsRsp(Reply):
    host_uuid: str
    hostname: str
    libvirt_version: str
    qemu_img_version: str
    cpu_num: int
    cpu_sockets: int
    cpu_model_name: str
    cpu_flags: list[str]
    total_memory: int
    """Bytes."""
    acceleration: Acceleration
    hypervisor_type: str
    """``KVM`` or ``Simulator``."""


class ConnectCmd(Request[HostFactsRsp]):
    PATH = HOST_CONNECT
    host_uuid: str
    report_url: str = ""


class PingRsp(Reply):
    host_uuid: str
    """"" after an agent restart: it was not connected since."""


class PingCmd(Request[PingRsp]):
    PATH = HOST_PING
    host_uuid: str = ""


class HostCapacityRsp(Reply):
    cpu_num: int
    total_memory: int
    used_memory: int
    free_memory: int


class HostCapacityCmd(Request[HostCapacityRsp]):
    PATH = HOST_CAPACITY


class VolumeTO(Wire):
    install_path: str
    format: Literal["qcow2", "raw"] = "qcow2"


MAX_DATA_VOLUMES: Final = 24
"""Data volumes a VM can have at most (``vdb``..``vdy``; ZStack's kvm.dataVolume.maxNum)."""


class DataVolumeTO(Wire):
    """A data volume as a VM's disk: ``vd<letter>`` of ``deviceId`` (1 is ``vdb``), with
    the volume's uuid as its serial (``/dev/disk/by-id/virtio-<first 20 characters>``).
    ``installPath`` (its active file) is under a primary storage's ``datavolumes/``
    directory (``<storagePath>/datavolumes/vol-<uuid>/...``): the agent checks the
    volume's chain against that storage."""

    uuid: str
    install_path: str
    format: Literal["qcow2", "raw"] = "qcow2"
    device_id: int = Field(ge=1, le=MAX_DATA_VOLUMES)


def disk_target(device_id: int) -> str:
    """The guest device of a VM's disk: ``vda`` for the root volume (0), ``vdb`` for 1..."""
    if not 0 <= device_id <= MAX_DATA_VOLUMES:
        raise ValueError(f"device id {device_id} is not in 0..{MAX_DATA_VOLUMES}")
    return "vd" + chr(ord("a") + device_id)


VIRTUAL_PORT_TYPES: Final = ("", "openvswitch")
"""How a NIC is plugged into its bridge, in libvirt's words (``<virtualport type>``): ""
for a port of a Linux bridge, ``openvswitch`` for a port of an Open vSwitch bridge (which
libvirt adds itself).  Only a virtual port can carry a VLAN tag."""


class NicTO(Wire):
    """A VM NIC as the host realises it: completed by the core's
    ``KVMCompleteNicInformationExtensionPoint`` for its L2 network's type and vSwitch."""

    mac: str
    bridge_name: str
    """The bridge (or switch) the NIC is a port of: a project name (``zsl…``)."""
    device_name: str
    """The tap, chosen by the core (``zslt…``)."""
    virtual_port_type: str = ""
    """One of :data:`VIRTUAL_PORT_TYPES`."""
    vlan_id: int | None = None
    """The access port's VLAN tag (1-4094), or None for an untagged port."""


class VmStateRsp(Reply):
    vm_uuid: str
    state: str


SMBIOS_SERIAL_MAX: Final = 1024
SMBIOS_SERIAL: Final = r"^[\x20-\x7e]*$"
"""An SMBIOS serial is printable ASCII (it goes into the domain XML and the guest's DMI
table, where a control character has no place)."""


class StartVmCmd(Request[VmStateRsp]):
    PATH = VM_START
    ASYNC = True
    vm_uuid: str
    vm_name: str = ""
    cpu_num: int
    memory_size: int
    """Bytes."""
    root_volume: VolumeTO
    nics: list[NicTO] = []
    console_log_path: str = ""
    acceleration: Literal["", "kvm", "tcg"] = ""
    timeout: float = 60.0
    smbios_serial: str = Field(default="", max_length=SMBIOS_SERIAL_MAX, pattern=SMBIOS_SERIAL)
    """The domain's SMBIOS system serial (``/sys/class/dmi/id/product_serial`` in the guest;
    cloud-init reads its NoCloud seed there). Empty: the domain has no ``<sysinfo>``."""
    data_volumes: list[DataVolumeTO] = []
    """The VM's data volumes, each its own virtio disk (see :class:`DataVolumeTO`)."""


StopType = Literal["grace", "cold", "force"]


class StopVmCmd(Request[VmStateRsp]):
    PATH = VM_STOP
    ASYNC = True
    vm_uuid: str
    type: StopType = "grace"
    timeout: float = 60.0


class RebootVmCmd(Request[VmStateRsp]):
    PATH = VM_REBOOT
    ASYNC = True
    vm_uuid: str
    timeout: float = 60.0


class PauseVmCmd(Request[VmStateRsp]):
    PATH = VM_PAUSE
    vm_uuid: str


class ResumeVmCmd(Request[VmStateRsp]):
    PATH = VM_RESUME
    vm_uuid: str


class DestroyVmRsp(Reply):
    vm_uuid: str


class DestroyVmCmd(Request[DestroyVmRsp]):
    PATH = VM_DESTROY
    ASYNC = True
    vm_uuid: str


class ExpungeVmCmd(Request[Ack]):
    PATH = VM_EXPUNGE
    vm_uuid: str
    console_log_path: str = ""


class VmSyncRsp(Reply):
    states: dict[str, str]
    """VM uuid -> state, for every domain the project owns."""


class VmSyncCmd(Request[VmSyncRsp]):
    PATH = VM_SYNC


class VmConsoleRsp(Reply):
    vm_uuid: str
    pty: str
    console_log_path: str


class VmConsoleCmd(Request[VmConsoleRsp]):
    PATH = VM_CONSOLE
    vm_uuid: str


class CreateVolumeRsp(Reply):
    install_path: str
    size: int
    actual_size: int


class CreateVolumeCmd(Request[CreateVolumeRsp]):
    PATH = VOLUME_CREATE
    install_path: str
    backing_file: str = ""
    format: Literal["qcow2"] = "qcow2"
    size: int = 0
    """Bytes; 0 is the backing file's size."""


class DeleteVolumeCmd(Request[Ack]):
    PATH = VOLUME_DELETE
    install_path: str
    storage_path: str = ""
    keep_if_backing: list[str] = []
    """Files whose backing chains must not hold ``install_path`` (see VOLUME_DELETE)."""


class DownloadImageRsp(Reply):
    install_path: str
    format: str
    size: int
    actual_size: int
    md5sum: str = Field(alias="md5sum")
    """Not ``md5Sum``: the name ZStack's agent answers with."""


class DownloadImageCmd(Request[DownloadImageRsp]):
    PATH = IMAGE_DOWNLOAD
    ASYNC = True
    url: str
    install_path: str
    checksum: str = ""
    task_uuid: str = ""
    """The progress reports' task uuid (default: the call's)."""
    stall_timeout: float = DEFAULT_STALL_TIMEOUT


class ImageInfoRsp(Reply):
    format: str
    size: int
    actual_size: int


class ImageInfoCmd(Request[ImageInfoRsp]):
    PATH = IMAGE_INFO
    install_path: str


class DeleteFileCmd(Request[Ack]):
    PATH = FILE_DELETE
    path: str


class InitStorageRsp(Reply):
    path: str
    total_capacity: int
    available_capacity: int


class InitStorageCmd(Request[InitStorageRsp]):
    PATH = STORAGE_INIT
    path: str


class AttachVolumeCmd(Request[Ack]):
    PATH = VM_ATTACH_VOLUME
    vm_uuid: str
    volume: DataVolumeTO


class DetachVolumeCmd(Request[Ack]):
    PATH = VM_DETACH_VOLUME
    vm_uuid: str
    volume: DataVolumeTO
    timeout: float = 30.0


class VolumeFileOp(Wire):
    """What every command on a volume's chain names: the VM and disk it may be live in,
    and the primary storage directory its files must be in."""

    vm_uuid: str = ""
    """The VM the volume is attached to ("" none): live if its domain is running."""
    device_id: int = Field(default=0, ge=0, le=MAX_DATA_VOLUMES)
    storage_path: str
    install_path: str


class TakeSnapshotRsp(Reply):
    install_path: str
    """The snapshot's file (the former active file)."""
    new_install_path: str
    size: int
    """The volume's virtual size, bytes."""
    actual_size: int
    """The snapshot file's bytes on disk."""


class TakeSnapshotCmd(VolumeFileOp, Request[TakeSnapshotRsp]):
    PATH = VOLUME_SNAPSHOT
    new_install_path: str
    full: bool = False


class RebaseVolumeRsp(Reply):
    install_path: str
    backing_file: str


class RebaseVolumeCmd(VolumeFileOp, Request[RebaseVolumeRsp]):
    PATH = VOLUME_REBASE
    backing_file: str = ""
    """Its new backing file ("" for none: the file is made standalone)."""


class ResizeVolumeRsp(Reply):
    size: int


class ResizeVolumeCmd(VolumeFileOp, Request[ResizeVolumeRsp]):
    PATH = VOLUME_RESIZE
    size: int = Field(gt=0)


class VolumeChainRsp(Reply):
    chains: dict[str, list[str]]
    missing: list[str] = []


class VolumeChainCmd(Request[VolumeChainRsp]):
    PATH = VOLUME_CHAIN
    storage_path: str
    install_paths: list[str]


class ExportVolumeRsp(Reply):
    install_path: str
    format: str
    size: int
    actual_size: int
    md5sum: str = Field(alias="md5sum")


class ExportVolumeCmd(Request[ExportVolumeRsp]):
    PATH = VOLUME_EXPORT
    ASYNC = True
    storage_path: str
    install_path: str
    target_path: str
    task_uuid: str = ""


class CreateBridgeRsp(Reply):
    bridge_name: str


class CreateBridgeCmd(Request[CreateBridgeRsp]):
    PATH = BRIDGE_CREATE
    bridge_name: str
    physical_interface: str = ""
    allow_default_route_interface: bool = False


class DeleteBridgeCmd(Request[Ack]):
    PATH = BRIDGE_DELETE
    bridge_name: str


class CheckBridgeRsp(Reply):
    missing: list[str]


class CheckBridgeCmd(Request[CheckBridgeRsp]):
    PATH = BRIDGE_CHECK
    bridge_names: list[str]


class SetHostNatCmd(Request[Ack]):
    PATH = HOSTNAT_SET
    bridge_name: str
    gateway_cidr: str
    """``10.0.0.1/24``."""


class RemoveHostNatCmd(Request[Ack]):
    PATH = HOSTNAT_REMOVE
    bridge_name: str
    gateway_cidr: str


class RouteTO(Wire):
    destination: str
    interface: str
    gateway: str


class HostRoutesRsp(Reply):
    routes: list[RouteTO]


class HostRoutesCmd(Request[HostRoutesRsp]):
    PATH = HOST_ROUTES


class ApplianceNicTO(Wire):
    bridge_name: str
    mac: str
    ip: str
    prefix_length: int
    role: Literal["guest", "public"] = "guest"
    virtual_port_type: str = ""
    """How the veth's host end is plugged (:data:`VIRTUAL_PORT_TYPES`): "" enslaves it to
    a Linux bridge; another type is plugged by the agent plugin that serves it."""
    vlan_id: int | None = None
    """The access port's VLAN tag, or None."""


class CreateApplianceRsp(Reply):
    namespace: str
    socket_path: str
    token_file: str
    agent_pid: int | None = None


class CreateApplianceCmd(Request[CreateApplianceRsp]):
    PATH = APPLIANCE_CREATE
    appliance_uuid: str
    nics: list[ApplianceNicTO]
    default_gateway: str = ""


class DestroyApplianceCmd(Request[Ack]):
    PATH = APPLIANCE_DESTROY
    appliance_uuid: str


class CheckApplianceRsp(Reply):
    namespace: bool
    agent_running: bool
    missing_nics: list[str]


class CheckApplianceCmd(Request[CheckApplianceRsp]):
    PATH = APPLIANCE_CHECK
    appliance_uuid: str


class HostObjectTO(Wire):
    kind: str
    """One of :data:`LAB_OBJECT_KINDS`."""
    name: str
    ref: str = ""
    detail: str = ""


class LabInventoryRsp(Reply):
    lab: str
    objects: list[HostObjectTO]


class LabInventoryCmd(Request[LabInventoryRsp]):
    PATH = LAB_INVENTORY
    storage_paths: list[str] = []


class ObjectRefTO(Wire):
    kind: str
    name: str


class RefusedObjectTO(Wire):
    kind: str
    name: str
    error: str


class LabRemoveRsp(Reply):
    removed: list[HostObjectTO]
    refused: list[RefusedObjectTO]
    failures: list[RefusedObjectTO]


class LabRemoveCmd(Request[LabRemoveRsp]):
    PATH = LAB_REMOVE
    objects: list[ObjectRefTO]
    storage_paths: list[str] = []


class VmStateReport(Report):
    PATH = REPORT_VM_STATE
    host_uuid: str
    vm_uuid: str
    vm_state: str


class ProgressReport(Report):
    PATH = REPORT_PROGRESS
    task_uuid: str
    stage: str
    progress: int
    total: int
