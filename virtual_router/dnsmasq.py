"""dnsmasq: the one place that renders its files and supervises its process.

One dnsmasq per appliance serves static DHCP leases and DNS on the guest
interfaces only (``bind-interfaces`` with ``interface=`` lines).  Its files:

* ``dnsmasq.conf``, in the agent's data dir: interfaces, DHCP ranges (each tagging
  its network), the rare per-guest tags (below) and the paths of the files below.
  A change here restarts dnsmasq.
* ``dhcp-hosts``, ``dhcp-opts``, ``addn-hosts`` and ``dns-servers`` (the upstream
  servers and the ``server=/<domain>/`` lines that keep each guest domain local): what
  changes with the entries.  dnsmasq re-reads them on SIGHUP, so a change of entries
  never interrupts DHCP or DNS.
* ``dnsmasq.leases`` and ``dnsmasq.pid``, in the agent's data dir.

Why ``dhcp-hosts`` carries no ``set:`` tag (dnsmasq 2.90 crashes): for every DHCP
packet of a known guest, dnsmasq links the guest's ``set:`` tags into a list built on
its stack (``list->list->next = netid`` in rfc2131.c); on SIGHUP it frees the configs
read from the hosts file, walking that stale ``next`` chain, and ``free()``s memory
it never allocated: SIGSEGV in ``dhcp_config_free`` (later releases free the tags alone).  So the
options a guest gets are keyed by tags dnsmasq never frees: its network's tag, set by
its ``dhcp-range`` in the conf.  A guest whose options differ from the rest of its
network (a NIC that is not on the VM's default L3 network, or inconsistent entries)
is tagged by a ``dhcp-mac`` line in the conf instead: the rare change restarts.

dnsmasq starts as root (it binds port 67 and 53, opens its lease file and writes
its pid file), then drops to an unprivileged user (:func:`unprivileged_user`:
``dnsmasq``, which Debian's dnsmasq-base makes, else ``nobody``).  The files it
re-reads on SIGHUP cannot stay in the agent's data dir (0700 under the node's
data dir, which may itself be private): they live in a directory of their own,
:func:`contracts.names.dnsmasq_run_dir` (0750, root and the user's group;
the files 0640), and the data dir holds symlinks to them under the same names,
so whoever looks in the data dir sees what is served.  The lease file stays in
the data dir: dnsmasq keeps the descriptor it opened as root.  When the agent
does not run as root, dnsmasq cannot switch users, and everything stays in the
data dir.

An unexpected exit is logged with its status as soon as it happens; the watchdog
(or the next command) starts dnsmasq again, and :meth:`Dnsmasq.status` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import hashlib
import logging
import os
import pwd
import re
import shutil
import signal
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from agentkit.errors import AgentError
from contracts.names import dnsmasq_run_dir
from contracts.virtual_router import DnsmasqStatusTO
from virtual_router.model import DhcpEntry

log = logging.getLogger(__name__)

DNSMASQ = "/usr/sbin/dnsmasq"
DHCP_RELEASE = "/usr/bin/dhcp_release"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
RELEASE_TIMEOUT = 10.0
STDERR_LINES = 20
USERS = ("dnsmasq", "nobody")
"""The users dnsmasq may drop to, in order of preference."""
SERVED_DIR_MODE = 0o750
SERVED_FILE_MODE = 0o640


@dataclass(frozen=True)
class RunAs:
    """The unprivileged user and group dnsmasq switches to after it started as root."""

    user: str
    group: str
    gid: int


def unprivileged_user() -> RunAs:
    """``dnsmasq`` (Debian's dnsmasq-base makes it), else ``nobody``; with its primary group."""
    for name in USERS:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        try:
            group = grp.getgrgid(entry.pw_gid).gr_name
        except KeyError:
            continue
        return RunAs(name, group, entry.pw_gid)
    raise AgentError(f"none of the users {', '.join(USERS)} exists for dnsmasq to run as")


SERVED_NAMES = ("dhcp-hosts", "dhcp-opts", "addn-hosts", "dns-servers")
"""The files dnsmasq re-reads on SIGHUP (in :attr:`DnsmasqFiles.served_dir`)."""


@dataclass(frozen=True)
class DnsmasqFiles:
    conf: Path
    dhcp_hosts: Path
    dhcp_opts: Path
    addn_hosts: Path
    servers: Path
    leases: Path
    pid: Path
    data_dir: Path
    served_dir: Path
    """Where the files named in SERVED_NAMES live (the data dir, or a directory the
    unprivileged dnsmasq can read)."""

    @classmethod
    def in_dir(cls, data_dir: Path, served_dir: Path | None = None) -> DnsmasqFiles:
        served = data_dir if served_dir is None else served_dir
        return cls(
            conf=data_dir / "dnsmasq.conf",
            dhcp_hosts=served / "dhcp-hosts",
            dhcp_opts=served / "dhcp-opts",
            addn_hosts=served / "addn-hosts",
            servers=served / "dns-servers",
            leases=data_dir / "dnsmasq.leases",
            pid=data_dir / "dnsmasq.pid",
            data_dir=data_dir,
            served_dir=served,
        )

    @property
    def separate(self) -> bool:
        return self.served_dir != self.data_dir


@dataclass(frozen=True)
class DnsmasqConfig:
    """What dnsmasq should serve; interface names already resolved from MACs."""

    interfaces: tuple[str, ...] = ()
    """Where DHCP and DNS are served (sorted); none: dnsmasq does not run."""
    ranges: tuple[IPv4Network, ...] = ()
    """The guest networks with static leases (one ``dhcp-range`` each, sorted)."""
    upstream: tuple[IPv4Address, ...] = ()
    """Upstream DNS servers, in order."""
    entries: tuple[DhcpEntry, ...] = field(default=())

    @property
    def wanted(self) -> bool:
        return bool(self.interfaces)

    @cached_property
    def option_plan(self) -> OptionPlan:
        return plan_options(self.entries)


# -- rendering -----------------------------------------------------------------
OWN_OPTIONS_TAG = "zsl-own"
"""Set (by a ``dhcp-mac`` line) on the guests whose options are not their network's."""


@dataclass(frozen=True)
class GuestOptions:
    """What a guest is told besides its address and name: router, DNS servers and domain
    for its default L3 network; empty router and DNS options (3 and 6) for the others,
    so it keeps its default route (as ZStack's dnsmasq.py)."""

    network: IPv4Network
    default: bool
    gateway: IPv4Address | None = None
    dns: tuple[IPv4Address, ...] = ()
    domain: str = ""

    @classmethod
    def of(cls, e: DhcpEntry) -> GuestOptions:
        return cls.from_signature(e.network, signature(e))

    @classmethod
    def from_signature(cls, network: IPv4Network, sig: Signature) -> GuestOptions:
        default, gateway, dns, domain = sig
        if not default:
            return cls(network, False)
        router = IPv4Address(gateway) if gateway >= 0 else None
        return cls(network, True, router, tuple(IPv4Address(d) for d in dns), domain)

    @property
    def tag(self) -> str:
        """The tag of guests with these options, when they are not their network's."""
        digest = hashlib.sha256(repr(self).encode()).hexdigest()[:10]
        return f"zsl-o{digest}"

    def lines(self) -> list[str]:
        lines = [f"option:netmask,{self.network.netmask}"]
        if not self.default:
            return [*lines, "3", "6"]
        if self.gateway is not None:
            lines.append(f"option:router,{self.gateway}")
        if self.dns:
            lines.append(f"option:dns-server,{','.join(str(d) for d in self.dns)}")
        if self.domain:
            lines.append(f"option:domain-name,{self.domain}")
        return lines


Signature = tuple[bool, int, tuple[int, ...], str]
"""A guest's options within its network, cheap to hash and compare (thousands of entries are
planned on every change): default L3 or not, gateway (-1: none), DNS servers, domain."""


def signature(e: DhcpEntry) -> Signature:
    if not e.is_default_l3:
        return (False, -1, (), "")
    gateway = int(e.gateway) if e.gateway is not None else -1
    return (True, gateway, tuple(int(d) for d in e.dns), e.dns_domain)


def network_tag(network: IPv4Network) -> str:
    """The tag a network's ``dhcp-range`` sets on its guests."""
    return f"zsl-net-{str(network.network_address).replace('.', '-')}-{network.prefixlen}"


@dataclass(frozen=True)
class OptionPlan:
    """Which options each guest gets: its network's (by the range's tag), or its own."""

    networks: dict[IPv4Network, GuestOptions]
    own: tuple[tuple[str, GuestOptions], ...]
    """(MAC, options) of the guests whose options are not their network's, by MAC."""


def plan_options(entries: Iterable[DhcpEntry]) -> OptionPlan:
    """A network's options are those most of its default-L3 guests have (of all its guests
    when none is on its default L3 network; ties go to the first in sort order), so the
    conf, which names the exceptions, changes only when an exception does."""
    groups: dict[tuple[int, int], list[DhcpEntry]] = {}
    for e in entries:
        mask = int(e.netmask)
        groups.setdefault((int(e.ip) & mask, mask), []).append(e)
    networks: dict[IPv4Network, GuestOptions] = {}
    own: list[tuple[str, GuestOptions]] = []
    for members in groups.values():
        network = members[0].network
        sigs = [(e.mac, signature(e)) for e in members]
        counts = Counter(sig for _, sig in sigs if sig[0]) or Counter(sig for _, sig in sigs)
        chosen = min(counts, key=lambda sig: (-counts[sig], sig))
        networks[network] = GuestOptions.from_signature(network, chosen)
        own += [
            (mac, GuestOptions.from_signature(network, sig)) for mac, sig in sigs if sig != chosen
        ]
    return OptionPlan(networks, tuple(sorted(own, key=lambda guest: guest[0])))


def render_conf(config: DnsmasqConfig, files: DnsmasqFiles, run_as: RunAs | None = None) -> str:
    """``run_as``: the user to drop to (none: stay who started it, when that is not root)."""
    owner = [f"user={run_as.user}", f"group={run_as.group}"] if run_as is not None else []
    own = config.option_plan.own
    lines = [
        "# Written by the ZStack Lite virtual-router agent; every change is overwritten.",
        *owner,
        "bind-interfaces",
        "except-interface=lo",
        *(f"interface={name}" for name in config.interfaces),
        "no-resolv",
        "no-hosts",
        "domain-needed",
        "bogus-priv",
        "log-facility=-",
        f"pid-file={files.pid}",
        "dhcp-authoritative",
        f"dhcp-leasefile={files.leases}",
        f"dhcp-hostsfile={files.dhcp_hosts}",
        f"dhcp-optsfile={files.dhcp_opts}",
        f"addn-hosts={files.addn_hosts}",
        f"servers-file={files.servers}",
        *(
            f"dhcp-range=set:{network_tag(net)},{net.network_address},static,{net.netmask},infinite"
            for net in config.ranges
        ),
        *(
            line
            for mac, options in own
            for line in (
                f"dhcp-mac=set:{OWN_OPTIONS_TAG},{mac}",
                f"dhcp-mac=set:{options.tag},{mac}",
            )
        ),
    ]
    return "\n".join(lines) + "\n"


def render_dhcp_hosts(entries: Iterable[DhcpEntry]) -> str:
    """One static lease per guest, with no ``set:`` tag (see the module's doc); only the
    default L3 network names the guest."""
    lines = []
    for e in entries:
        name = f"{e.hostname}," if e.is_default_l3 and e.hostname else ""
        lines.append(f"{e.mac},{e.ip},{name}infinite")
    return "".join(line + "\n" for line in lines)


def render_dhcp_opts(plan: OptionPlan) -> str:
    """Each network's options for its guests but those with their own, then each set of
    guests' own options."""
    lines = []
    for network, options in sorted(plan.networks.items()):
        prefix = f"tag:{network_tag(network)},tag:!{OWN_OPTIONS_TAG}"
        lines += [f"{prefix},{line}" for line in options.lines()]
    for options in sorted({o for _, o in plan.own}, key=lambda o: o.tag):
        lines += [f"tag:{options.tag},{line}" for line in options.lines()]
    return "".join(line + "\n" for line in lines)


def render_addn_hosts(entries: Iterable[DhcpEntry]) -> str:
    lines = []
    for e in entries:
        if not e.hostname:
            continue
        names = f"{e.hostname}.{e.dns_domain} {e.hostname}" if e.dns_domain else e.hostname
        lines.append(f"{e.ip} {names}")
    return "".join(line + "\n" for line in lines)


def render_servers(config: DnsmasqConfig) -> str:
    """The upstream servers, and ``server=/<domain>/`` (what ``local=`` means) per guest
    domain: answered from the hosts file only, never forwarded.  This file, unlike the
    conf, is re-read on SIGHUP, so neither a new domain nor new upstream servers restart."""
    domains = sorted({e.dns_domain for e in config.entries if e.dns_domain})
    return "".join(
        [
            *(f"server={address}\n" for address in config.upstream),
            *(f"server=/{d}/\n" for d in domains),
        ]
    )


def render(
    config: DnsmasqConfig, files: DnsmasqFiles, run_as: RunAs | None = None
) -> dict[Path, str]:
    """Every file's text; the conf first."""
    return {
        files.conf: render_conf(config, files, run_as),
        files.dhcp_hosts: render_dhcp_hosts(config.entries),
        files.dhcp_opts: render_dhcp_opts(config.option_plan),
        files.addn_hosts: render_addn_hosts(config.entries),
        files.servers: render_servers(config),
    }


def explain_start_failure(stderr: str) -> str:
    """A start failure in the caller's words: which address and port is taken, when that is it."""
    detail = stderr.strip() or "no output"
    match = re.search(r"failed to create listening socket for ([0-9a-fA-F.:]+): (.+)", stderr)
    if match and "in use" in match.group(2):
        return (
            f"dnsmasq cannot listen on {match.group(1)} port 53 (DNS): the address and port "
            f"are already in use by another program ({detail})"
        )
    if re.search(r"failed to bind DHCP server socket: .*in use", stderr):
        return (
            f"dnsmasq cannot listen on port 67 (DHCP): already in use by another program ({detail})"
        )
    return f"dnsmasq failed to start: {detail}"


def prune_leases(path: Path, entries: Iterable[DhcpEntry]) -> list[str]:
    """Drop from a stopped dnsmasq's lease file every IPv4 lease that is not one of
    ``entries`` (same MAC and IP); the dropped leases' ``mac ip``."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    wanted = {(e.mac, str(e.ip)) for e in entries}
    kept, dropped = [], []
    for line in lines:
        parts = line.split()
        is_v4_lease = len(parts) >= 3 and ":" in parts[1] and "." in parts[2]
        if is_v4_lease and (parts[1].lower(), parts[2]) not in wanted:
            dropped.append(f"{parts[1]} {parts[2]}")
            continue
        kept.append(line)
    if dropped:
        _write(path, "".join(line + "\n" for line in kept))
    return dropped


def _write(path: Path, text: str, gid: int | None = None) -> None:
    """Replace a file atomically, so dnsmasq never re-reads half of one; with ``gid``,
    root's and readable by that group only."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    if gid is not None:
        os.chown(tmp, 0, gid)
        tmp.chmod(SERVED_FILE_MODE)
    os.replace(tmp, path)


# -- the process ---------------------------------------------------------------
@dataclass(frozen=True)
class DnsmasqStatus:
    """What /ping tells about dnsmasq: a restart is one after an unexpected exit (a
    restart for a changed conf is not counted)."""

    pid: int | None = None
    restarts: int = 0
    last_exit: str = ""
    """How the last unexpected exit happened (``killed by SIGSEGV``, ``exit status 2``)."""
    reloads: int = 0
    """SIGHUPs sent (entries changed)."""

    def to_contract(self) -> DnsmasqStatusTO:
        return DnsmasqStatusTO(
            pid=self.pid, restarts=self.restarts, last_exit=self.last_exit, reloads=self.reloads
        )


def describe_exit(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"


class Dnsmasq:
    """Renders the files and keeps one dnsmasq child serving the last applied config."""

    def __init__(
        self,
        data_dir: Path,
        *,
        binary: str = DNSMASQ,
        release_binary: str = DHCP_RELEASE,
        start_timeout: float = START_TIMEOUT,
        run_as: RunAs | None = None,
    ) -> None:
        """``run_as``: default :func:`unprivileged_user` when the agent is root, else none
        (dnsmasq stays the agent's user and reads everything in the data dir)."""
        data_dir = Path(data_dir)
        if run_as is None and os.geteuid() == 0:
            run_as = unprivileged_user()
        self.run_as = run_as
        served = dnsmasq_run_dir(data_dir) if run_as is not None else None
        self.files = DnsmasqFiles.in_dir(data_dir, served)
        self.binary = binary
        self.release_binary = release_binary
        self.start_timeout = start_timeout
        self.config = DnsmasqConfig()
        self._proc: asyncio.subprocess.Process | None = None
        self._stderr_task: asyncio.Task[None] | None = None
        self._stderr: deque[str] = deque(maxlen=STDERR_LINES)
        self._exit_task: asyncio.Task[None] | None = None
        self._running_conf = ""
        self.restarts = 0
        self.last_exit = ""
        self.reloads = 0

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def status(self) -> DnsmasqStatus:
        return DnsmasqStatus(self.pid, self.restarts, self.last_exit, self.reloads)

    async def apply(self, config: DnsmasqConfig) -> None:
        """Serve ``config``: rewrite the files, then SIGHUP when only entries changed, restart
        when the conf changed, stop when nothing is to be served.  On failure the previous
        config is put back before the error is raised."""
        previous = self.config
        try:
            await self._apply(config)
        except AgentError:
            try:
                await self._apply(previous)
            except AgentError as exc:
                log.error("could not put the previous dnsmasq config back: %s", exc)
            raise
        self.config = config

    async def ensure_running(self) -> bool:
        """Start dnsmasq again if it should run but does not; whether it had to."""
        if not self.config.wanted or self.running:
            return False
        texts = render(self.config, self.files, self.run_as)
        self._write_files(texts)  # the served ones may have gone with /run
        await self._restart(texts[self.files.conf])
        return True

    async def release(self, interface: str, ip: str, mac: str) -> None:
        """``dhcp_release``: make a running dnsmasq forget a lease (a warning if it cannot)."""
        try:
            proc = await asyncio.create_subprocess_exec(
                self.release_binary,
                interface,
                ip,
                mac,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            log.warning("%s is not installed (Debian package dnsmasq-utils)", self.release_binary)
            return
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT):
                _, err = await proc.communicate()
        except TimeoutError:
            proc.kill()
            await proc.wait()
            log.warning("dhcp_release %s %s %s timed out", interface, ip, mac)
            return
        if proc.returncode != 0:
            log.warning(
                "dhcp_release %s %s %s failed: %s", interface, ip, mac, err.decode().strip()
            )

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; the served files' directory goes
        (the data dir keeps the rest)."""
        await self._stop_process()
        self._remove_served()

    def _remove_served(self) -> None:
        """The served files' own directory and the data dir's symlinks to it, if separate."""
        if self.files.separate:
            shutil.rmtree(self.files.served_dir, ignore_errors=True)
            for name in SERVED_NAMES:
                link = self.files.data_dir / name
                if link.is_symlink():
                    link.unlink()

    async def _stop_process(self) -> None:
        proc, self._proc = self._proc, None  # not current any more: its exit is expected
        self._running_conf = ""
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await proc.wait()
            except TimeoutError:
                log.warning("dnsmasq did not stop on SIGTERM; killing it")
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if proc is not None:
            await proc.wait()
        task, self._exit_task = self._exit_task, None
        if task is not None:
            await task
        await self._drain_stderr()
        self.files.pid.unlink(missing_ok=True)

    async def kill_stale(self) -> bool:
        """Stop a dnsmasq left by an earlier agent on this data dir (it would hold the
        ports); whether there was one."""
        try:
            pid = int(self.files.pid.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError):
            return False
        if f"--conf-file={self.files.conf}".encode() not in cmdline:
            return False
        log.warning("stopping dnsmasq %d left by an earlier agent", pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + STOP_TIMEOUT
            while _alive(pid) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            if not _alive(pid):
                break
        self.files.pid.unlink(missing_ok=True)
        return True

    # -- internals -------------------------------------------------------------
    def _write_files(self, texts: dict[Path, str]) -> bool:
        """Write the files that differ (the served ones readable by dnsmasq's group, with
        symlinks from the data dir); whether any did."""
        self.files.data_dir.mkdir(parents=True, exist_ok=True)
        gid = self.run_as.gid if self.files.separate and self.run_as is not None else None
        if gid is not None and any(path.parent == self.files.served_dir for path in texts):
            served = self.files.served_dir
            served.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            served.mkdir(mode=SERVED_DIR_MODE, exist_ok=True)
            os.chown(served, 0, gid)
            served.chmod(SERVED_DIR_MODE)
            (served / "data-dir").write_text(f"{self.files.data_dir.absolute()}\n")
        changed = False
        for path, text in texts.items():
            served_file = path.parent == self.files.served_dir and gid is not None
            if _read(path) != text:
                _write(path, text, gid if served_file else None)
                changed = True
            link = self.files.data_dir / path.name
            if served_file and not link.is_symlink():
                link.unlink(missing_ok=True)
                link.symlink_to(path)
        return changed

    async def _apply(self, config: DnsmasqConfig) -> None:
        texts = render(config, self.files, self.run_as)
        if config.wanted and shutil.which(self.binary) is None:
            raise AgentError(f"{self.binary} is not installed (Debian package dnsmasq-base)")
        if not config.wanted and self.files.separate:  # nothing served: nothing left in /run
            texts = {self.files.conf: texts[self.files.conf]}
            self._remove_served()
        changed = self._write_files(texts)
        if not config.wanted:
            await self._stop_process()
            prune_leases(self.files.leases, config.entries)
        elif not self.running or texts[self.files.conf] != self._running_conf:
            await self._restart(texts[self.files.conf], config.entries)
        elif changed and self._proc is not None:
            log.info("dnsmasq: entries changed; SIGHUP")
            self._proc.send_signal(signal.SIGHUP)
            self.reloads += 1

    async def _restart(self, conf: str, entries: Iterable[DhcpEntry] | None = None) -> None:
        """Start dnsmasq (again); one that died on its own is counted and logged."""
        died = self._proc
        if died is not None and died.returncode is not None:
            self.restarts += 1
            self.last_exit = describe_exit(died.returncode)
            log.warning(
                "restarting dnsmasq (restart %d): %d exited unexpectedly (%s)",
                self.restarts,
                died.pid,
                self.last_exit,
            )
        await self._stop_process()
        dropped = prune_leases(
            self.files.leases, self.config.entries if entries is None else entries
        )
        if dropped:
            log.info("dropped leases no longer configured: %s", ", ".join(dropped))
        self._stderr.clear()
        try:
            self._proc = await asyncio.create_subprocess_exec(
                self.binary,
                "--keep-in-foreground",
                f"--conf-file={self.files.conf}",
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )
        except FileNotFoundError:
            raise AgentError(
                f"{self.binary} is not installed (Debian package dnsmasq-base)"
            ) from None
        self._stderr_task = asyncio.create_task(
            self._read_stderr(self._proc), name="dnsmasq stderr"
        )
        self._exit_task = asyncio.create_task(self._watch_exit(self._proc), name="dnsmasq exit")
        await self._wait_started(self._proc)
        self._running_conf = conf
        log.info("dnsmasq %d started", self._proc.pid)

    async def _wait_started(self, proc: asyncio.subprocess.Process) -> None:
        """Started once its pid file names it (dnsmasq writes it after binding its sockets);
        failed if it exits first."""
        deadline = time.monotonic() + self.start_timeout
        while proc.returncode is None:
            if _read(self.files.pid).strip() == str(proc.pid):
                return
            if time.monotonic() > deadline:
                await self._stop_process()
                raise AgentError(f"dnsmasq did not start within {self.start_timeout:g}s")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.02):
                    await proc.wait()
        self._proc = None
        task, self._exit_task = self._exit_task, None
        if task is not None:
            await task
        await self._drain_stderr()
        message = explain_start_failure("\n".join(self._stderr))
        raise AgentError(message)

    async def _watch_exit(self, proc: asyncio.subprocess.Process) -> None:
        """Log an exit nobody asked for as soon as it happens, with its status (the
        watchdog restarts dnsmasq; a stopped one is no longer ``self._proc``)."""
        returncode = await proc.wait()
        if proc is self._proc and self._running_conf:
            self.last_exit = describe_exit(returncode)
            log.error("dnsmasq %d exited unexpectedly (%s)", proc.pid, self.last_exit)

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            self._stderr.append(text)
            log.info("%s", text)

    async def _drain_stderr(self) -> None:
        task, self._stderr_task = self._stderr_task, None
        if task is not None:
            try:
                async with asyncio.timeout(2):
                    await task
            except TimeoutError:
                task.cancel()


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie nobody has reaped yet does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


class SimulatedDnsmasq:
    """--simulate: keeps the config and the releases in memory and runs nothing; with a
    data dir it also writes the files a real dnsmasq would read, so a demo lab (and a
    test) can see what would be served."""

    def __init__(self, data_dir: Path | None = None) -> None:
        self.config = DnsmasqConfig()
        self.releases: list[tuple[str, str, str]] = []
        self.files = DnsmasqFiles.in_dir(data_dir) if data_dir is not None else None

    @property
    def running(self) -> bool:
        return self.config.wanted

    def status(self) -> DnsmasqStatus:
        return DnsmasqStatus()

    async def apply(self, config: DnsmasqConfig) -> None:
        self.config = config
        if self.files is not None:
            for path, text in render(config, self.files).items():
                _write(path, text)

    async def ensure_running(self) -> bool:
        return False

    async def release(self, interface: str, ip: str, mac: str) -> None:
        self.releases.append((interface, ip, mac))

    async def stop(self) -> None:
        return None

    async def kill_stale(self) -> bool:
        return False
