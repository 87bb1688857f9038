"""The tiny guest image boots under libvirt (TCG), gets a DHCP lease and gives a shell.

Builds ``build/tiny-guest.qcow2`` when missing (in-process, idempotent), then
boots a transient ``qemu``-type domain from a copy-on-write overlay of it with one
virtio NIC on QEMU user networking (slirp: its DHCP hands out 10.0.2.15; nothing
leaves the QEMU process) and a serial console logged to a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from xml.sax.saxutils import quoteattr

import libvirt
import pytest

from agent.guest_image import UP_LINE_PREFIX
from agent.guest_image.build import DEFAULT_OUTPUT, build_image

pytestmark = pytest.mark.system

URI = "qemu:///system"
SLIRP_IP = "10.0.2.15"
UP_TIMEOUT = 60.0
SHELL_TIMEOUT = 30.0
UP_RE = re.compile(re.escape(UP_LINE_PREFIX) + r" ip=(\S+) hostname=(\S+)")


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def domain_xml(name: str, image: Path, overlay: Path, log: Path) -> str:
    """A TCG domain booting the overlay by BIOS from its disk (no direct kernel boot).

    The backing image is declared with ``relabel='no'``: libvirt would otherwise
    chown it to the QEMU user and, as it does for read-only backing files, not
    give it back.
    """
    return f"""
<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>
  <features><acpi/></features>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file={quoteattr(str(overlay))}/>
      <backingStore type='file'>
        <format type='qcow2'/>
        <source file={quoteattr(str(image))}><seclabel model='dac' relabel='no'/></source>
        <backingStore/>
      </backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <interface type='user'><model type='virtio'/></interface>
    <serial type='pty'>
      <log file={quoteattr(str(log))} append='off'/>
      <target port='0'/>
    </serial>
    <console type='pty'><target type='serial' port='0'/></console>
  </devices>
</domain>
"""


class ConsoleReader:
    """The domain's serial console through a libvirt stream, read by a thread."""

    def __init__(self, conn: libvirt.virConnect, dom: libvirt.virDomain) -> None:
        self.stream = conn.newStream(0)
        dom.openConsole(None, self.stream, libvirt.VIR_DOMAIN_CONSOLE_FORCE)
        self._buf = bytearray()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            while True:
                data = self.stream.recv(4096)
                if not isinstance(data, bytes) or not data:
                    return
                with self._lock:
                    self._buf.extend(data)
        except libvirt.libvirtError:
            return

    def text(self) -> str:
        with self._lock:
            return self._buf.decode(errors="replace")

    def send(self, line: str) -> None:
        self.stream.send(line.encode() + b"\r")

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.stream.abort()
        self._thread.join(5)


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@pytest.fixture(scope="module")
def image() -> Path:
    build_image(DEFAULT_OUTPUT)
    return DEFAULT_OUTPUT


@pytest.fixture
def workdir() -> Iterator[Path]:
    # Not pytest's tmp_path: /tmp/pytest-of-root is 0700 and QEMU runs as
    # libvirt-qemu, which must reach the overlay (libvirt chowns the file only).
    path = Path(tempfile.mkdtemp(prefix="zsl-t"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_image_is_a_small_bootable_qcow2(image: Path) -> None:
    out = subprocess.run(
        ["qemu-img", "info", "--output=json", str(image)], capture_output=True, check=True
    ).stdout.decode()
    assert '"format": "qcow2"' in out
    virtual = int(re.search(r'"virtual-size": (\d+)', out).group(1))  # type: ignore[union-attr]
    assert virtual <= 64 * 1024 * 1024
    assert image.with_name(image.name + ".inputs").is_file()


def test_rebuild_is_skipped_when_inputs_unchanged(image: Path) -> None:
    before = sha256(image)
    assert build_image(image) is False
    assert sha256(image) == before


def test_guest_boots_gets_dhcp_and_gives_a_shell(image: Path, workdir: Path) -> None:
    image_digest, image_owner = sha256(image), image.stat().st_uid
    overlay, log = workdir / "overlay.qcow2", workdir / "console.log"
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(image), str(overlay)],
        check=True,
    )
    name = f"zsl-test-{secrets.token_hex(4)}"

    def log_text() -> str:
        return log.read_text(errors="replace") if log.exists() else ""

    # The console stream ends with an error when the domain goes; keep it off stderr.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
    conn = libvirt.open(URI)
    dom: libvirt.virDomain | None = None
    console: ConsoleReader | None = None
    try:
        started = time.monotonic()
        dom = conn.createXML(domain_xml(name, image, overlay, log), 0)
        assert wait_for(lambda: UP_RE.search(log_text()), UP_TIMEOUT), (
            f"no '{UP_LINE_PREFIX}' line within {UP_TIMEOUT:.0f} s; console:\n{log_text()}"
        )
        up_after = time.monotonic() - started
        match = UP_RE.search(log_text())
        assert match is not None
        assert match.group(1) == SLIRP_IP, log_text()
        assert match.group(2) == "tiny-guest", log_text()

        console = ConsoleReader(conn, dom)
        deadline = time.monotonic() + SHELL_TIMEOUT
        while "zsl-42" not in console.text() and time.monotonic() < deadline:
            console.send("echo zsl-$((6*7))")
            wait_for(lambda: "zsl-42" in console.text(), 3.0)
        assert "zsl-42" in console.text(), f"no shell answer; console:\n{console.text()}"
        # One NIC, one line, however long the guest has run.
        assert len(UP_RE.findall(log_text())) == 1, log_text()
        print(f"guest up after {up_after:.1f} s:\n{log_text()}")
    finally:
        if console is not None:
            console.close()
        if dom is not None:
            for cleanup in (dom.destroy, dom.undefine):  # a transient domain: undefine fails
                with contextlib.suppress(libvirt.libvirtError):
                    cleanup()
        conn.close()
        libvirt.registerErrorHandler(None, None)
    assert sha256(image) == image_digest, "the base image changed"
    assert image.stat().st_uid == image_owner, "libvirt chowned the base image"
