"""The appliance's desired state (DHCP entries, DNS, SNAT) and how it is made real.

Every change is computed on a copy, checked against the interfaces that exist
(by MAC), then applied; the copy becomes the state only once applying
succeeded, and the drivers put their previous state back when they fail, so a
refused command changes nothing.  Commands and the watchdog's repairs are
serialised by one lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any, Protocol

from agentkit.errors import AgentError, ArgumentError
from virtual_router.dnsmasq import DnsmasqConfig, DnsmasqStatus
from virtual_router.extension_points import Repairer
from virtual_router.interfaces import Interface, Interfaces, InterfaceTable
from virtual_router.model import DhcpEntry, DhcpKey, DnsInfo, Snat
from virtual_router.snat import IP_FORWARD, SnatRule

log = logging.getLogger(__name__)

WATCHDOG_INTERVAL = 2.0


class DnsmasqDriver(Protocol):
    config: DnsmasqConfig

    @property
    def running(self) -> bool: ...
    def status(self) -> DnsmasqStatus: ...
    async def apply(self, config: DnsmasqConfig) -> None: ...
    async def ensure_running(self) -> bool: ...
    async def release(self, interface: str, ip: str, mac: str) -> None: ...
    async def stop(self) -> None: ...
    async def kill_stale(self) -> bool: ...


class SnatDriver(Protocol):
    async def apply(self, rules: Iterable[SnatRule]) -> None: ...
    async def repair(self) -> list[str]: ...


@dataclass(frozen=True)
class State:
    dhcp: tuple[DhcpEntry, ...] = ()
    dns: tuple[DnsInfo, ...] = ()
    snats: tuple[Snat, ...] = field(default=())


def merge_dhcp(current: Iterable[DhcpEntry], new: Iterable[DhcpEntry]) -> tuple[DhcpEntry, ...]:
    """``current`` with each of ``new`` replacing any entry with the same ip or mac
    (the entries of one request are unique: commands refuse duplicates)."""
    new = list(new)
    ips, macs = {e.ip for e in new}, {e.mac for e in new}
    return (*(e for e in current if e.ip not in ips and e.mac not in macs), *new)


def merge_snats(current: Iterable[Snat], new: Iterable[Snat]) -> tuple[Snat, ...]:
    merged = list(current)
    for snat in new:
        merged = [s for s in merged if s.private_nic_mac != snat.private_nic_mac]
        merged.append(snat)
    return tuple(merged)


def check_dhcp(entries: Iterable[DhcpEntry], table: InterfaceTable) -> None:
    """Each new entry's ``vrNicMac`` must be an interface with an address in its network."""
    for i, entry in enumerate(entries):
        field_name = f"dhcpEntryList[{i}].vrNicMac"
        nic = table.find(entry.vr_nic_mac, field_name)
        if not table.simulated and nic.address_in(entry.network) is None:
            raise ArgumentError(
                f"field {field_name!r}: interface {nic.name} ({entry.vr_nic_mac}) has no "
                f"address in {entry.network}, the network of {entry.ip}"
            )


def check_dns(dns: Iterable[DnsInfo], table: InterfaceTable) -> None:
    for i, info in enumerate(dns):
        table.find(info.nic_mac, f"dns[{i}].nicMac")


def check_snats(snats: Iterable[Snat], table: InterfaceTable) -> None:
    for i, s in enumerate(snats):
        table.find(s.private_nic_mac, f"snats[{i}].privateNicMac")
        table.find(s.public_nic_mac, f"snats[{i}].publicNicMac")


def _present(table: InterfaceTable, mac: str, what: str) -> Interface | None:
    """An interface of an entry already held: one that vanished leaves the entry out (it comes
    back if the interface does) instead of blocking every later command."""
    try:
        return table.find(mac, what)
    except ArgumentError:
        log.warning("no interface with MAC %s any more; leaving out %s", mac, what)
        return None


def dnsmasq_config(state: State, table: InterfaceTable) -> DnsmasqConfig:
    interfaces: set[str] = set()
    ranges: set[IPv4Network] = set()
    entries = []
    for entry in state.dhcp:
        nic = _present(table, entry.vr_nic_mac, f"the DHCP entry of {entry.mac}")
        if nic is not None:
            interfaces.add(nic.name)
            ranges.add(entry.network)
            entries.append(entry)
    dns = [d for d in state.dns if _present(table, d.nic_mac, f"DNS {d.address}") is not None]
    interfaces.update(table.find(d.nic_mac, "nicMac").name for d in dns)
    return DnsmasqConfig(
        interfaces=tuple(sorted(interfaces)),
        ranges=tuple(sorted(ranges)),
        upstream=tuple(dict.fromkeys(d.address for d in dns)),
        entries=tuple(entries),
    )


def snat_rules(snats: Iterable[Snat], table: InterfaceTable) -> tuple[SnatRule, ...]:
    rules = []
    for s in snats:
        what = f"the SNAT of {s.private_network}"
        private = _present(table, s.private_nic_mac, what)
        public = _present(table, s.public_nic_mac, what)
        if private is not None and public is not None:
            rules.append(SnatRule(private.name, s.private_network, public.name, s.public_ip))
    return tuple(rules)


class VirtualRouter:
    """The appliance; also the :class:`~virtual_router.extension_points.RouterContext` its
    plugins are made with."""

    def __init__(
        self,
        interfaces: Interfaces,
        dnsmasq: DnsmasqDriver,
        snat: SnatDriver,
        *,
        simulated: bool = False,
        ip_forward: Path = IP_FORWARD,
        data_dir: Path | None = None,
    ) -> None:
        self.interfaces = interfaces
        self.dnsmasq = dnsmasq
        self.snat = snat
        self.simulated = simulated
        self.ip_forward = ip_forward
        self.data_dir = data_dir or Path(".")
        self.state = State()
        self.uuid = ""
        self.lock = asyncio.Lock()
        self.plugin_state: dict[str, Any] = {}
        self.repairers: list[Repairer] = []
        self._watchdog: asyncio.Task[None] | None = None

    # -- DHCP and DNS ----------------------------------------------------------
    async def add_dhcp(self, entries: list[DhcpEntry], rebuild: bool) -> None:
        async with self.lock:
            table = await self.interfaces.snapshot()
            check_dhcp(entries, table)
            dhcp = merge_dhcp(() if rebuild else self.state.dhcp, entries)
            await self._apply_dnsmasq(replace(self.state, dhcp=dhcp), table)

    async def remove_dhcp(self, keys: list[DhcpKey]) -> None:
        async with self.lock:
            removed = [e for e in self.state.dhcp if any(k.matches(e) for k in keys)]
            if not removed:
                return
            kept = tuple(e for e in self.state.dhcp if e not in removed)
            table = await self.interfaces.snapshot()
            await self._apply_dnsmasq(replace(self.state, dhcp=kept), table)
            if not self.dnsmasq.running:
                return  # its lease file was pruned before it stopped or restarted
            for entry in removed:
                nic = _present(table, entry.vr_nic_mac, f"the lease of {entry.mac}")
                if nic is not None:
                    await self.dnsmasq.release(nic.name, str(entry.ip), entry.mac)

    async def set_dns(self, dns: list[DnsInfo]) -> None:
        async with self.lock:
            table = await self.interfaces.snapshot()
            check_dns(dns, table)
            await self._apply_dnsmasq(replace(self.state, dns=tuple(dict.fromkeys(dns))), table)

    async def remove_dns(self, dns: list[DnsInfo]) -> None:
        async with self.lock:
            kept = tuple(d for d in self.state.dns if d not in dns)
            await self._apply_dnsmasq(
                replace(self.state, dns=kept), await self.interfaces.snapshot()
            )

    async def _apply_dnsmasq(self, state: State, table: InterfaceTable) -> None:
        await self.dnsmasq.apply(dnsmasq_config(state, table))
        self.state = state

    # -- SNAT ------------------------------------------------------------------
    async def set_snats(self, snats: list[Snat]) -> None:
        async with self.lock:
            await self._apply_snats(merge_snats(self.state.snats, snats), snats)

    async def remove_snats(self, private_nic_macs: list[str]) -> None:
        async with self.lock:
            kept = tuple(s for s in self.state.snats if s.private_nic_mac not in private_nic_macs)
            await self._apply_snats(kept, [])

    async def sync_snats(self, snats: list[Snat]) -> None:
        async with self.lock:
            await self._apply_snats(merge_snats((), snats), snats)

    async def _apply_snats(self, snats: tuple[Snat, ...], new: list[Snat]) -> None:
        table = await self.interfaces.snapshot()
        check_snats(new, table)
        rules = snat_rules(snats, table)
        await self.snat.apply(rules)
        self.state = replace(self.state, snats=snats)

    # -- health ----------------------------------------------------------------
    async def repair(self) -> list[str]:
        """Make dnsmasq and the nft table match the desired state again; what was repaired.
        Each part is tried even when another fails; failures are raised together after."""
        async with self.lock:
            repaired: list[str] = []
            failures: list[str] = []
            try:
                if await self.dnsmasq.ensure_running():
                    why = self.dnsmasq.status().last_exit
                    repaired.append(f"dnsmasq restarted ({why})" if why else "dnsmasq restarted")
            except AgentError as exc:
                failures.append(f"dnsmasq is not running and could not be restarted: {exc}")
            try:
                repaired += await self.snat.repair()
            except (AgentError, OSError) as exc:
                failures.append(f"the SNAT table could not be restored: {exc}")
            for repairer in self.repairers:
                try:
                    repaired += await repairer.repair()
                except (AgentError, OSError) as exc:
                    failures.append(f"{type(repairer).__name__} could not repair: {exc}")
            for what in repaired:
                log.warning("repaired: %s", what)
            if failures:
                raise AgentError("; ".join(failures))
            return repaired

    def ensure_forwarding(self) -> None:
        if not self.simulated and self.ip_forward.read_text().strip() != "1":
            self.ip_forward.write_text("1\n")

    def start_watchdog(self, interval: float = WATCHDOG_INTERVAL) -> None:
        self._watchdog = asyncio.create_task(self._watch(interval), name="vr watchdog")

    async def _watch(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await self.repair()
            except AgentError as exc:
                log.error("repair failed (retrying in %gs): %s", interval, exc)
            except Exception:
                log.exception("repair failed unexpectedly; retrying in %gs", interval)

    async def close(self) -> None:
        """Stop the watchdog and dnsmasq; the nft table stays (the namespace goes with it)."""
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
            self._watchdog = None
        async with self.lock:
            await self.dnsmasq.stop()
