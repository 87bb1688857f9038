"""A real appliance namespace for the agent: the appliance (``vr``), a guest and an
upstream namespace wired by veths, the agent run in it as the host agent runs it, and the
guest's view (DHCP with busybox udhcpc, names with busybox nslookup).

Everything made here is a namespace named ``zsl-t<random>`` (the veths live and die with them)
or lives in one temp directory; :func:`made_lab` removes all of it.  Traffic stays between
these namespaces (the upstream one is 203.0.113.0/24, a documentation range).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts import virtual_router as p
from tests.virtual_router.helpers import VrClient, dhcp_entry, wait_for

REPO = Path(__file__).resolve().parents[2]
BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DOMAIN = "lab.lan"
PUBLIC_IP, UPSTREAM_IP = "203.0.113.10", "203.0.113.1"


def why_not() -> str:
    """Why the real-namespace tests cannot run here ("" when they can)."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    for tool in ("/usr/sbin/dnsmasq", "/usr/sbin/nft", "/usr/bin/dhcp_release", BUSYBOX):
        if not os.path.exists(tool):
            return f"{tool} is missing (make system-deps)"
    return ""


def run(*args: str, check: bool = True, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def in_ns(ns: str, *args: str, check: bool = True, timeout: float = 15) -> str:
    return run("ip", "netns", "exec", ns, *args, check=check, timeout=timeout).stdout


def random_mac() -> str:
    return "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))


@dataclass
class Lab:
    """The appliance (``vr``), a guest and an upstream namespace, wired by veths."""

    suffix: str
    workdir: Path
    net: int = field(default_factory=lambda: 1 + secrets.randbelow(250))
    vr_guest_mac: str = field(default_factory=random_mac)
    vr_guest2_mac: str = field(default_factory=random_mac)
    vr_public_mac: str = field(default_factory=random_mac)
    guest_mac: str = field(default_factory=random_mac)
    guest2_mac: str = field(default_factory=random_mac)

    @property
    def vr(self) -> str:
        return f"zsl-t{self.suffix}v"

    @property
    def guest(self) -> str:
        return f"zsl-t{self.suffix}g"

    @property
    def upstream(self) -> str:
        return f"zsl-t{self.suffix}u"

    @property
    def namespaces(self) -> list[str]:
        return [self.vr, self.guest, self.upstream]

    def ip(self, host: int, second: bool = False) -> str:
        return f"10.{77 + second}.{self.net}.{host}"

    @property
    def gateway(self) -> str:
        return self.ip(1)

    def create(self) -> None:
        for ns in self.namespaces:
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
        self._veth("vg0", self.vr_guest_mac, "ge0", self.guest_mac, self.guest)
        self._veth("vg1", self.vr_guest2_mac, "ge1", self.guest2_mac, self.guest)
        self._veth("vp0", self.vr_public_mac, "ue0", random_mac(), self.upstream)
        run("ip", "-n", self.vr, "addr", "add", f"{self.gateway}/24", "dev", "vg0")
        run("ip", "-n", self.vr, "addr", "add", f"{self.ip(1, True)}/24", "dev", "vg1")
        run("ip", "-n", self.vr, "addr", "add", f"{PUBLIC_IP}/24", "dev", "vp0")
        run("ip", "-n", self.upstream, "addr", "add", f"{UPSTREAM_IP}/24", "dev", "ue0")

    def _veth(self, name: str, mac: str, peer: str, peer_mac: str, peer_ns: str) -> None:
        run(
            "ip", "-n", self.vr, "link", "add", name, "address", mac, "type", "veth",
            "peer", "name", peer, "address", peer_mac, "netns", peer_ns,
        )  # fmt: skip
        run("ip", "-n", self.vr, "link", "set", name, "up")
        run("ip", "-n", peer_ns, "link", "set", peer, "up")

    def destroy(self) -> None:
        """Kill whatever still runs in our namespaces (all of it started here), then delete them."""
        existing = run("ip", "netns", "list", check=False).stdout
        for ns in self.namespaces:
            if not re.search(rf"^{re.escape(ns)}\b", existing, re.M):
                continue
            for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            run("ip", "netns", "del", ns, check=False)

    # -- the guest's view ------------------------------------------------------------
    def dhcp(self, interface: str = "ge0", tries: int = 4) -> dict[str, str]:
        """One DHCP exchange from the guest with busybox udhcpc; the lease's variables
        (empty when no lease came)."""
        script = self.workdir / "udhcpc.sh"
        if not script.exists():
            script.write_text(
                "#!/bin/sh\n"
                '[ "$1" = bound ] && echo "LEASE ip=$ip router=$router dns=$dns '
                'domain=$domain subnet=$subnet hostname=$hostname"\nexit 0\n'
            )
            script.chmod(0o755)
        out = in_ns(
            self.guest, BUSYBOX, "udhcpc", "-i", interface, "-n", "-q", "-f",
            "-t", str(tries), "-T", "1", "-A", "1", "-s", str(script),
            check=False,
        )  # fmt: skip
        for line in out.splitlines():
            if line.startswith("LEASE "):
                return dict(kv.split("=", 1) for kv in line[6:].split())
        return {}

    def configure_guest(self, ip: str) -> None:
        run("ip", "-n", self.guest, "addr", "replace", f"{ip}/24", "dev", "ge0")
        run("ip", "-n", self.guest, "route", "replace", "default", "via", self.gateway)

    def lookup(self, name: str) -> list[str]:
        """The addresses the appliance's DNS answers for ``name``, asked from the guest."""
        out = in_ns(self.guest, BUSYBOX, "nslookup", name, self.gateway, check=False)
        answer = out.split(f"Name:\t{name}", 1)
        return re.findall(r"Address:\s*([\d.]+)\s*$", answer[1], re.M) if len(answer) > 1 else []


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie not yet reaped does not)."""
    try:
        return "\nState:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


class AgentProcess:
    """``python -m virtual_router.main`` inside the appliance namespace."""

    def __init__(self, lab: Lab) -> None:
        self.lab = lab
        self.socket = lab.workdir / "vr.sock"
        self.data = lab.workdir / "data"
        self.token_file = lab.workdir / "token"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client: VrClient | None = None
        self._log_start = 0

    async def start(self) -> VrClient:
        self._log_start = len(self.log())
        self.proc = subprocess.Popen(
            [
                "ip", "netns", "exec", self.lab.vr, sys.executable, "-m", "virtual_router.main",
                "--socket", str(self.socket), "--data-dir", str(self.data),
                "--token-file", str(self.token_file), "--log-level", "debug",
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        await wait_for(self._listening, 20, "the agent to listen")
        self.client = VrClient(str(self.socket), self.token_file.read_text().strip())
        return self.client

    def _listening(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the agent exited ({self.proc.returncode}):\n{self.log()}")
        return "serving on" in self.log()[self._log_start :]

    async def stop(self) -> int:
        """SIGTERM; the exit status."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        if self.proc is None:
            return 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.to_thread(self.proc.wait, 10)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        return code

    async def kill(self) -> None:
        """SIGKILL, as a crash would: dnsmasq is left running."""
        if self.client is not None:
            await self.client.close()
            self.client = None
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def log(self) -> str:
        path = self.data / p.LOG_FILE
        return path.read_text() if path.exists() else ""

    def dnsmasq_pid(self) -> int | None:
        """The running dnsmasq's pid (from its pid file), if it runs."""
        try:
            pid = int((self.data / "dnsmasq.pid").read_text())
        except (OSError, ValueError):
            return None
        return pid if alive(pid) else None

    def leases(self) -> str:
        path = self.data / "dnsmasq.leases"
        return path.read_text() if path.exists() else ""


@contextlib.contextmanager
def made_lab() -> Iterator[Lab]:
    workdir = Path(tempfile.mkdtemp(prefix="zsl-vr-sys-"))
    made = Lab(secrets.token_hex(3), workdir)
    try:
        made.create()
        yield made
    finally:
        made.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def guest_entry(lab: Lab, host: int, mac: str, name: str) -> dict[str, Any]:
    return dhcp_entry(
        lab.ip(host), mac, lab.vr_guest_mac, hostname=name, domain=DOMAIN, dns=[lab.gateway]
    )
