"""The real drivers without root (fixed interfaces, a stand-in dnsmasq): a missing binary is
named with its Debian package, a failed start is explained and undone, a dead dnsmasq is
restarted by the repair, and a refused command changes nothing."""

from __future__ import annotations

import os
import signal
from ipaddress import IPv4Interface
from pathlib import Path

import pytest

from agentkit.errors import AgentError
from tests.virtual_router.helpers import dhcp_entry, snat, wait_for
from virtual_router.dnsmasq import Dnsmasq, DnsmasqStatus
from virtual_router.interfaces import Interface, InterfaceTable
from virtual_router.model import DhcpEntry, Fields, Snat
from virtual_router.router import VirtualRouter
from virtual_router.snat import NftSnat

GUEST = Interface("eth1", "02:00:00:00:01:01", (IPv4Interface("10.1.0.1/24"),))
PUBLIC = Interface("eth0", "02:00:00:00:00:aa", (IPv4Interface("203.0.113.10/24"),))


class FixedInterfaces:
    async def snapshot(self) -> InterfaceTable:
        return InterfaceTable({GUEST.mac: GUEST, PUBLIC.mac: PUBLIC})


def router(tmp_path: Path) -> VirtualRouter:
    return VirtualRouter(
        FixedInterfaces(),
        Dnsmasq(tmp_path, binary="/nonexistent/dnsmasq"),
        NftSnat(binary="/nonexistent/nft", ip_forward=tmp_path / "ip_forward"),
    )


async def test_missing_dnsmasq_names_its_package(tmp_path: Path) -> None:
    vr = router(tmp_path)
    entry = DhcpEntry.parse(Fields(dhcp_entry("10.1.0.10", "52:54:00:00:00:01", GUEST.mac)))
    missing = r"dnsmasq is not installed \(Debian package dnsmasq-base\)"
    with pytest.raises(AgentError, match=missing):
        await vr.add_dhcp([entry], rebuild=False)
    assert vr.state.dhcp == ()
    assert not vr.dnsmasq.running


async def test_missing_nft_names_its_package(tmp_path: Path) -> None:
    vr = router(tmp_path)
    rule = Snat.parse(Fields(snat(GUEST.mac, "10.1.0.1", PUBLIC.mac, "203.0.113.10")))
    with pytest.raises(AgentError, match=r"nft is not installed \(Debian package nftables\)"):
        await vr.set_snats([rule])
    assert vr.state.snats == ()
    assert not (tmp_path / "ip_forward").exists()


async def test_interfaces_are_checked_before_anything_changes(tmp_path: Path) -> None:
    vr = router(tmp_path)
    wrong_net = DhcpEntry.parse(Fields(dhcp_entry("10.9.0.10", "52:54:00:00:00:01", GUEST.mac)))
    with pytest.raises(AgentError, match=r"interface eth1 .* has no address in 10\.9\.0\.0/24"):
        await vr.add_dhcp([wrong_net], rebuild=False)
    unknown = Snat.parse(Fields(snat(GUEST.mac, "10.1.0.1", "02:00:00:00:00:ee", "203.0.113.10")))
    with pytest.raises(AgentError, match=r"'snats\[0\].publicNicMac': no interface with MAC"):
        await vr.set_snats([unknown])
    assert vr.state.dhcp == () and vr.state.snats == ()
    assert not (tmp_path / "dnsmasq.conf").exists()


FAKE_DNSMASQ = """#!/bin/sh
# A stand-in for dnsmasq: fails like a taken port 53 while $0.fail exists, else writes its
# pid file (named in the conf) and idles, ignoring SIGHUP as dnsmasq handles it.
if [ -e "$0.fail" ]; then
    echo "dnsmasq: failed to create listening socket for 10.1.0.1: Address already in use" >&2
    exit 2
fi
conf="${2#--conf-file=}"
pidfile=$(sed -n 's/^pid-file=//p' "$conf")
echo $$ > "$pidfile"
trap '' HUP
exec sleep 60
"""


@pytest.fixture
def fake_dnsmasq(tmp_path: Path) -> Path:
    path = tmp_path / "fake-dnsmasq"
    path.write_text(FAKE_DNSMASQ)
    path.chmod(0o755)
    return path


async def test_a_failed_start_names_the_conflict_and_restores(
    tmp_path: Path, fake_dnsmasq: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    vr = VirtualRouter(FixedInterfaces(), Dnsmasq(data, binary=str(fake_dnsmasq)), NftSnat())
    first = DhcpEntry.parse(Fields(dhcp_entry("10.1.0.10", "52:54:00:00:00:01", GUEST.mac)))
    second = DhcpEntry.parse(Fields(dhcp_entry("10.1.0.11", "52:54:00:00:00:02", GUEST.mac)))
    try:
        Path(f"{fake_dnsmasq}.fail").touch()
        with pytest.raises(AgentError, match=r"10\.1\.0\.1 port 53 .* already in use"):
            await vr.add_dhcp([first], rebuild=False)
        assert vr.state.dhcp == () and not vr.dnsmasq.running
        hosts = data / "dhcp-hosts"  # nothing served (none at all when dnsmasq drops root)
        assert not hosts.exists() or hosts.read_text() == ""

        Path(f"{fake_dnsmasq}.fail").unlink()
        await vr.add_dhcp([first], rebuild=False)
        pid = int((data / "dnsmasq.pid").read_text())
        await vr.add_dhcp([second], rebuild=False)  # entries only: SIGHUP, same process
        assert int((data / "dnsmasq.pid").read_text()) == pid
        assert "52:54:00:00:00:02" in (data / "dhcp-hosts").read_text()
        assert vr.dnsmasq.status() == DnsmasqStatus(pid, restarts=0, last_exit="", reloads=1)

        # Killed: the exit is logged at once with its signal, repaired and counted.
        os.kill(pid, signal.SIGKILL)
        await wait_for(lambda: not vr.dnsmasq.running, 5, "the exit to be noticed")
        await wait_for(lambda: vr.dnsmasq.status().last_exit != "", 5, "the exit's status")
        assert f"dnsmasq {pid} exited unexpectedly (killed by SIGKILL)" in caplog.text
        assert await vr.repair() == ["dnsmasq restarted (killed by SIGKILL)"]
        assert int((data / "dnsmasq.pid").read_text()) != pid
        status = vr.dnsmasq.status()
        assert (status.restarts, status.last_exit) == (1, "killed by SIGKILL")
        assert "restarting dnsmasq (restart 1)" in caplog.text
        # A restart for a changed conf is not counted: a guest with options of its own (not
        # its default L3 network) is tagged in the conf.
        restarted = int((data / "dnsmasq.pid").read_text())
        own = dhcp_entry("10.1.0.12", "52:54:00:00:00:03", GUEST.mac, default=False)
        await vr.add_dhcp([DhcpEntry.parse(Fields(own))], rebuild=False)
        assert "dhcp-mac=set:zsl-own,52:54:00:00:00:03" in (data / "dnsmasq.conf").read_text()
        assert int((data / "dnsmasq.pid").read_text()) != restarted
        assert vr.dnsmasq.status().restarts == 1
        os.kill(int((data / "dnsmasq.pid").read_text()), signal.SIGKILL)
        await wait_for(lambda: not vr.dnsmasq.running, 5, "the exit to be noticed")
        Path(f"{fake_dnsmasq}.fail").touch()
        with pytest.raises(AgentError, match="dnsmasq is not running and could not be restarted"):
            await vr.repair()
        assert len(vr.state.dhcp) == 3
    finally:
        await vr.close()
