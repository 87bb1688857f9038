"""What the agent writes: dnsmasq's files, the nft ruleset, lease pruning, start-failure text."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from tests.virtual_router.helpers import dhcp_entry
from virtual_router.dnsmasq import (
    DnsmasqConfig,
    DnsmasqFiles,
    GuestOptions,
    RunAs,
    explain_start_failure,
    plan_options,
    prune_leases,
    render_addn_hosts,
    render_conf,
    render_dhcp_hosts,
    render_dhcp_opts,
    render_servers,
)
from virtual_router.model import DhcpEntry, Fields
from virtual_router.snat import SnatRule, render_ruleset

VR_MAC = "02:00:00:00:01:01"


def entry(ip: str, mac: str, **kw: object) -> DhcpEntry:
    return DhcpEntry.parse(Fields(dhcp_entry(ip, mac, VR_MAC, **kw)))  # type: ignore[arg-type]


VM1 = entry("10.1.0.10", "52:54:00:AA:00:01", hostname="vm1", domain="lab.lan", dns=["10.1.0.1"])
VM2 = entry("10.2.0.20", "52:54:00:aa:00:02", hostname="vm2", domain="other.lan", default=False)
VM3 = entry("10.1.0.11", "52:54:00:aa:00:03")


def test_dhcp_hosts_name_only_default_l3_guests_and_set_no_tag() -> None:
    """No ``set:`` tag: dnsmasq 2.90 crashes freeing one on SIGHUP after the guest's packet."""
    assert render_dhcp_hosts([VM1, VM2, VM3]) == (
        "52:54:00:aa:00:01,10.1.0.10,vm1,infinite\n"
        "52:54:00:aa:00:02,10.2.0.20,infinite\n"
        "52:54:00:aa:00:03,10.1.0.11,infinite\n"
    )


NET1, NET2 = "zsl-net-10-1-0-0-24", "zsl-net-10-2-0-0-24"
LAB = {"domain": "lab.lan", "dns": ["10.1.0.1"]}
GUESTS = [
    entry("10.1.0.10", "52:54:00:aa:00:01", hostname="vm1", **LAB),  # type: ignore[arg-type]
    entry("10.1.0.11", "52:54:00:aa:00:03", hostname="vm3", **LAB),  # type: ignore[arg-type]
    entry("10.1.0.12", "52:54:00:aa:00:04", default=False),
    VM2,
]


def test_options_are_the_networks_and_only_exceptions_are_tagged_in_the_conf(
    tmp_path: Path,
) -> None:
    own = GuestOptions.of(GUESTS[2])
    assert render_dhcp_opts(plan_options(GUESTS)) == (
        f"tag:{NET1},tag:!zsl-own,option:netmask,255.255.255.0\n"
        f"tag:{NET1},tag:!zsl-own,option:router,10.1.0.1\n"
        f"tag:{NET1},tag:!zsl-own,option:dns-server,10.1.0.1\n"
        f"tag:{NET1},tag:!zsl-own,option:domain-name,lab.lan\n"
        f"tag:{NET2},tag:!zsl-own,option:netmask,255.255.255.0\n"
        f"tag:{NET2},tag:!zsl-own,3\n"
        f"tag:{NET2},tag:!zsl-own,6\n"
        f"tag:{own.tag},option:netmask,255.255.255.0\n"
        f"tag:{own.tag},3\n"
        f"tag:{own.tag},6\n"
    )
    config = DnsmasqConfig(
        interfaces=("eth1",),
        ranges=(IPv4Network("10.1.0.0/24"), IPv4Network("10.2.0.0/24")),
        entries=tuple(GUESTS),
    )
    conf = render_conf(config, DnsmasqFiles.in_dir(tmp_path)).splitlines()
    assert [line for line in conf if line.startswith(("dhcp-range=", "dhcp-mac="))] == [
        f"dhcp-range=set:{NET1},10.1.0.0,static,255.255.255.0,infinite",
        f"dhcp-range=set:{NET2},10.2.0.0,static,255.255.255.0,infinite",
        "dhcp-mac=set:zsl-own,52:54:00:aa:00:04",
        f"dhcp-mac=set:{own.tag},52:54:00:aa:00:04",
    ]


def test_a_networks_options_follow_most_of_its_default_guests() -> None:
    odd = entry("10.1.0.13", "52:54:00:aa:00:05", gateway="10.1.0.254")
    plan = plan_options([*GUESTS, odd])
    assert plan.networks[IPv4Network("10.1.0.0/24")] == GuestOptions.of(GUESTS[0])
    assert [mac for mac, _ in plan.own] == ["52:54:00:aa:00:04", "52:54:00:aa:00:05"]
    # Adding or removing guests like most of them changes nothing in the conf.
    more = entry("10.1.0.14", "52:54:00:aa:00:06", hostname="vm6", **LAB)  # type: ignore[arg-type]
    assert plan_options([*GUESTS, odd, more]).own == plan.own
    assert plan_options([GUESTS[0], GUESTS[2], odd]).own == plan.own
    # A network without default-L3 guests: theirs, nothing tagged.
    assert plan_options([VM2]).own == ()


def test_names_local_domains_and_upstream_servers_are_reread_on_sighup() -> None:
    assert render_addn_hosts([VM1, VM2, VM3]) == (
        "10.1.0.10 vm1.lab.lan vm1\n10.2.0.20 vm2.other.lan vm2\n"
    )
    config = DnsmasqConfig(
        upstream=(IPv4Address("203.0.113.53"), IPv4Address("203.0.113.54")),
        entries=(VM1, VM2, VM3, VM1),
    )
    assert render_servers(config) == (
        "server=203.0.113.53\nserver=203.0.113.54\nserver=/lab.lan/\nserver=/other.lan/\n"
    )


def test_conf_binds_only_the_guest_interfaces(tmp_path: Path) -> None:
    files = DnsmasqFiles.in_dir(tmp_path)
    config = DnsmasqConfig(
        interfaces=("eth1", "eth2"),
        ranges=(IPv4Network("10.1.0.0/24"), IPv4Network("10.2.0.0/25")),
        upstream=(IPv4Address("203.0.113.53"),),
        entries=(VM1,),
    )
    lines = render_conf(config, files).splitlines()
    for expected in (
        "bind-interfaces",
        "except-interface=lo",
        "interface=eth1",
        "interface=eth2",
        "no-resolv",
        "no-hosts",
        f"pid-file={tmp_path}/dnsmasq.pid",
        f"dhcp-leasefile={tmp_path}/dnsmasq.leases",
        f"dhcp-hostsfile={tmp_path}/dhcp-hosts",
        f"dhcp-optsfile={tmp_path}/dhcp-opts",
        f"addn-hosts={tmp_path}/addn-hosts",
        f"servers-file={tmp_path}/dns-servers",
        f"dhcp-range=set:{NET1},10.1.0.0,static,255.255.255.0,infinite",
        "dhcp-range=set:zsl-net-10-2-0-0-25,10.2.0.0,static,255.255.255.128,infinite",
    ):
        assert expected in lines
    assert [line for line in lines if line.startswith("interface=")] == [
        "interface=eth1",
        "interface=eth2",
    ]
    assert not [line for line in lines if line.startswith("server=")]  # in the servers file
    assert not DnsmasqConfig().wanted


def test_ruleset_replaces_the_table_in_one_transaction() -> None:
    rules = [
        SnatRule("eth1", IPv4Network("10.1.0.0/24"), "eth0", IPv4Address("203.0.113.10")),
        SnatRule("eth2", IPv4Network("10.2.0.0/24"), "eth0", IPv4Address("203.0.113.11")),
    ]
    text = render_ruleset(rules)
    assert text.startswith("table ip zsl_vr_nat\ndelete table ip zsl_vr_nat\ntable ip zsl_vr_nat {")
    assert "type nat hook postrouting priority srcnat; policy accept;" in text
    assert 'oifname "eth0" ip saddr 10.1.0.0/24 snat to 203.0.113.10' in text
    assert 'oifname "eth0" ip saddr 10.2.0.0/24 snat to 203.0.113.11' in text
    assert "type filter hook forward priority filter; policy accept;" in text
    assert 'iifname "eth1" oifname "eth0" ip saddr 10.1.0.0/24 accept' in text
    assert render_ruleset([]) == "table ip zsl_vr_nat\ndelete table ip zsl_vr_nat\n"


def test_prune_leases_keeps_only_configured_ones(tmp_path: Path) -> None:
    leases = tmp_path / "leases"
    assert prune_leases(leases, [VM1]) == []
    leases.write_text(
        "0 52:54:00:aa:00:01 10.1.0.10 vm1 01:52:54:00:aa:00:01\n"
        "0 52:54:00:aa:00:09 10.1.0.99 gone *\n"
        "0 52:54:00:aa:00:03 10.1.0.50 moved *\n"
        "duid 00:01:00:01:aa\n"
    )
    assert prune_leases(leases, [VM1, VM3]) == [
        "52:54:00:aa:00:09 10.1.0.99",
        "52:54:00:aa:00:03 10.1.0.50",
    ]
    assert leases.read_text() == (
        "0 52:54:00:aa:00:01 10.1.0.10 vm1 01:52:54:00:aa:00:01\nduid 00:01:00:01:aa\n"
    )


def test_start_failures_name_the_conflict() -> None:
    dns = explain_start_failure(
        "dnsmasq: failed to create listening socket for 10.1.0.1: Address already in use"
    )
    assert "10.1.0.1 port 53" in dns and "already in use" in dns
    dhcp = explain_start_failure("dnsmasq: failed to bind DHCP server socket: Address in use")
    assert "port 67" in dhcp
    other = explain_start_failure("dnsmasq: bad option")
    assert other == "dnsmasq failed to start: dnsmasq: bad option"


def test_conf_drops_to_the_given_user_and_names_the_served_dir(tmp_path: Path) -> None:
    files = DnsmasqFiles.in_dir(tmp_path / "data", tmp_path / "served")
    conf = render_conf(DnsmasqConfig(), files, RunAs("dnsmasq", "nogroup", 65534)).splitlines()
    assert "user=dnsmasq" in conf and "group=nogroup" in conf
    assert f"dhcp-hostsfile={tmp_path}/served/dhcp-hosts" in conf
    assert f"dhcp-leasefile={tmp_path}/data/dnsmasq.leases" in conf
    plain = render_conf(DnsmasqConfig(), DnsmasqFiles.in_dir(tmp_path)).splitlines()
    assert not [line for line in plain if line.startswith(("user=", "group="))]
