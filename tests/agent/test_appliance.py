"""The virtual-router appliance's namespace on the real host: veths into two test
bridges, the agent started inside, repair, rollback and a destroy that leaves nothing.

Appliance uuids are random (namespace ``zsl-vr-<9 hex>``, veths ``zslv<9 hex><n>``);
bridges are ``zslbr-t<8 hex>``.  Whatever a test leaves is removed in the fixture's
``finally``.  Traffic: only the agent's Unix socket.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute

from agent.network import links
from agent.network.appliance import namespace_exists, namespace_pids
from agent.network.base import ApplianceNic, ApplianceSpec
from agent.network.host import HostNetwork
from agentkit.errors import AgentError
from contracts.names import namespace_name, veth_name
from tests.agent.helpers import wait_until
from tests.agent.net_helpers import (
    ROOT,
    VR_MAIN,
    HostObjects,
    RecordingPlugger,
    Snapshot,
    free_subnet,
    snapshot,
    stand_in_command,
    stand_in_greeting,
    suffix,
    threaded,
    vr_call,
)

pytestmark = [
    pytest.mark.system,
    pytest.mark.skipif(not ROOT, reason="needs root (links, namespaces, nftables)"),
]


@pytest.fixture
def host() -> Iterator[HostObjects]:
    objects = HostObjects()
    try:
        yield objects
    finally:
        objects.clean()


@pytest.fixture
def net() -> Iterator[HostNetwork]:
    """A short data dir: the agent's socket path must fit sun_path (108 bytes)."""
    data_dir = Path(tempfile.mkdtemp(prefix="zsl-test-"))
    try:
        yield HostNetwork(data_dir / "agent", start_timeout=15)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


async def two_bridges(host: HostObjects, net: HostNetwork) -> tuple[str, str]:
    guest, public = host.bridge(), host.bridge()
    await net.bridge_create(guest)
    await net.bridge_create(public)
    return guest, public


def two_nic_spec(appliance_uuid: str, guest: str, public: str) -> ApplianceSpec:
    guest_net, public_net = free_subnet(), free_subnet()
    return ApplianceSpec(
        appliance_uuid,
        (
            ApplianceNic(guest, "52:54:00:aa:00:01", str(guest_net[1]), 24, "guest"),
            ApplianceNic(public, "52:54:00:aa:00:02", str(public_net[10]), 24, "public"),
        ),
        default_gateway=str(public_net[1]),
    )


@threaded
def namespace_view(ns: str) -> dict[str, tuple[str, set[str], bool]]:
    """ifname -> (MAC, IPv4 addresses, up) inside ``ns``; plus the default gateway."""
    with IPRoute(netns=ns) as nsr:
        view = {}
        for link in nsr.link("dump"):
            addrs = {
                f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}"
                for a in nsr.addr("dump", family=2)
                if a["index"] == link["index"]
            }
            view[links.name_of(link)] = (links.mac_of(link), addrs, links.is_up(link))
        gateways = {
            r.get_attr("RTA_GATEWAY")
            for r in nsr.route("dump", family=2)
            if r["dst_len"] == 0 and r["table"] == links.MAIN_TABLE
        }
        view["default"] = ("", gateways, True)
        return view


@threaded
def host_end(name: str) -> tuple[str, bool] | None:
    """(master's name, up) of a host end, None if it is gone."""
    with IPRoute() as ipr:
        link = links.find(ipr, name)
        if link is None:
            return None
        return links.index_name(ipr, links.master_of(link)), links.is_up(link)


@threaded
def delete_link(name: str) -> None:
    with IPRoute() as ipr:
        link = links.find(ipr, name)
        assert link is not None
        links.delete_link(ipr, link["index"])


def leftovers(before: Snapshot, after: Snapshot, appliance_uuid: str, marker: str) -> list[str]:
    """What ``after`` has of this appliance that ``before`` did not (other tests may run
    beside these, so only this appliance's names are compared)."""
    ns = namespace_name(appliance_uuid)
    prefix = veth_name(appliance_uuid, 0)[:-1]
    found = [n for n in after.links - before.links if n.startswith(prefix)]
    found += [n for n in after.namespaces - before.namespaces if n == ns]
    found += [t for t in after.tables - before.tables if "zsl_host_nat" in t]
    found += [cmd for _, cmd in after.processes - before.processes if marker in cmd]
    return found


def check_plugged(view: dict[str, tuple[str, set[str], bool]], spec: ApplianceSpec) -> None:
    for i, nic in enumerate(spec.nics):
        mac, addrs, up = view[f"eth{i}"]
        assert (mac, up) == (nic.mac, True)
        assert f"{nic.ip}/{nic.prefix_length}" in addrs
    assert view["lo"][2] is True
    assert view["default"][1] == {spec.default_gateway}


@pytest.mark.skipif(not VR_MAIN.exists(), reason=f"{VR_MAIN} is not written yet")
async def test_appliance_with_the_real_agent(host: HostObjects, net: HostNetwork) -> None:
    guest, public = await two_bridges(host, net)
    appliance_uuid = host.appliance()
    spec = two_nic_spec(appliance_uuid, guest, public)
    directory = net.appliance_dir(appliance_uuid)
    before = snapshot(str(directory))

    info = await net.appliance_create(spec)
    ns = namespace_name(appliance_uuid)
    assert info.namespace == ns and namespace_exists(ns)
    assert info.socket_path == str(directory / "agent.sock")
    assert info.token_file == str(directory / "agent.token")
    assert (directory.stat().st_mode & 0o777, Path(info.token_file).stat().st_mode & 0o777) == (
        0o700,
        0o600,
    )
    # 32 random bytes, URL-safe base64 (agentkit.auth makes every agent token).
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", Path(info.token_file).read_text().strip())
    assert host_end(veth_name(appliance_uuid, 0)) == (guest, True)
    assert host_end(veth_name(appliance_uuid, 1)) == (public, True)
    view = namespace_view(ns)
    check_plugged(view, spec)
    assert set(view) == {"lo", "eth0", "eth1", "default"}
    assert info.agent_pid in namespace_pids(ns)  # the agent runs inside the namespace
    ping = await vr_call(info.socket_path, info.token_file, "/ping")
    assert ping["success"] is True, ping
    status = await net.appliance_check(appliance_uuid)
    assert (status.namespace, status.agent_running, status.missing_nics) == (True, True, ())

    # A lost veth is reported, and a second create puts it back; the agent is left alone.
    delete_link(veth_name(appliance_uuid, 1))
    status = await net.appliance_check(appliance_uuid)
    assert status.missing_nics == ("52:54:00:aa:00:02",) and status.agent_running
    again = await net.appliance_create(spec)
    assert again.agent_pid == info.agent_pid
    assert host_end(veth_name(appliance_uuid, 1)) == (public, True)
    check_plugged(namespace_view(ns), spec)
    assert (await net.appliance_check(appliance_uuid)).missing_nics == ()

    # A dead agent is reported, and a second create starts a new one.
    os.kill(info.agent_pid, signal.SIGKILL)
    await wait_until(
        lambda: not _running(net, appliance_uuid), 10, "the killed agent to be seen as dead"
    )
    restarted = await net.appliance_create(spec)
    assert restarted.agent_pid != info.agent_pid
    assert (await vr_call(restarted.socket_path, restarted.token_file, "/ping"))["success"]

    await net.appliance_destroy(appliance_uuid)
    await net.appliance_destroy(appliance_uuid)  # idempotent
    after = snapshot(str(directory))
    assert leftovers(before, after, appliance_uuid, str(directory)) == []
    assert not directory.exists()
    assert host_end(veth_name(appliance_uuid, 0)) is None
    status = await net.appliance_check(appliance_uuid)
    assert (status.namespace, status.agent_running, status.missing_nics) == (False, False, ())


@threaded
def _running(net: HostNetwork, appliance_uuid: str) -> bool:
    return net.appliances.check(appliance_uuid).agent_running


async def test_destroying_an_appliance_never_made_succeeds(
    host: HostObjects, net: HostNetwork
) -> None:
    """A rollback after a crash destroys an appliance whose create may never have run."""
    appliance_uuid = host.appliance()
    directory = net.appliance_dir(appliance_uuid)
    before = snapshot(str(directory))
    await net.appliance_destroy(appliance_uuid)
    assert leftovers(before, snapshot(str(directory)), appliance_uuid, str(directory)) == []
    assert not namespace_exists(namespace_name(appliance_uuid))


async def test_appliance_with_a_stand_in_agent(host: HostObjects, net: HostNetwork) -> None:
    """The same life without the real virtual-router module: a tiny Unix-socket server."""
    guest, public = await two_bridges(host, net)
    appliance_uuid = host.appliance()
    spec = two_nic_spec(appliance_uuid, guest, public)
    directory = net.appliance_dir(appliance_uuid)
    before = snapshot(str(directory))
    info = await net.appliance_create(spec, stand_in_command())
    assert stand_in_greeting(info.socket_path) == "stand-in real"
    assert info.agent_pid in namespace_pids(info.namespace)
    check_plugged(namespace_view(info.namespace), spec)
    await net.appliance_destroy(appliance_uuid)
    assert leftovers(before, snapshot(str(directory)), appliance_uuid, str(directory)) == []


async def test_an_agent_started_but_not_recorded_is_not_left_beside_a_second_one(
    host: HostObjects, net: HostNetwork
) -> None:
    """The host agent died between starting the appliance's agent and writing its pid: the
    repeated create ends that agent before it starts the one it records."""
    guest, public = await two_bridges(host, net)
    appliance_uuid = host.appliance()
    spec = two_nic_spec(appliance_uuid, guest, public)
    directory = net.appliance_dir(appliance_uuid)
    before = snapshot(str(directory))
    first = await net.appliance_create(spec, stand_in_command())
    (directory / "agent.pid").unlink()
    again = await net.appliance_create(spec, stand_in_command())
    assert again.agent_pid != first.agent_pid
    agents = [p for p in namespace_pids(again.namespace) if again.socket_path in _cmdline(p)]
    assert agents == [again.agent_pid]
    assert stand_in_greeting(again.socket_path) == "stand-in real"
    await net.appliance_destroy(appliance_uuid)
    assert leftovers(before, snapshot(str(directory)), appliance_uuid, str(directory)) == []


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def test_a_failure_in_the_middle_leaves_nothing(host: HostObjects, net: HostNetwork) -> None:
    guest = host.bridge()
    await net.bridge_create(guest)
    appliance_uuid = host.appliance()
    missing = "zslbr-tnothere2"
    spec = ApplianceSpec(
        appliance_uuid,
        (
            ApplianceNic(guest, "52:54:00:aa:00:01", "10.250.0.1", 24),
            ApplianceNic(missing, "52:54:00:aa:00:02", "10.251.0.1", 24),
        ),
    )
    directory = net.appliance_dir(appliance_uuid)
    before = snapshot(str(directory))
    with pytest.raises(AgentError) as failed:
        await net.appliance_create(spec, stand_in_command())
    message = str(failed.value)
    assert f"step 'plug NIC 1 (52:54:00:aa:00:02) into bridge {missing}' failed" in message
    assert f"bridge {missing} does not exist" in message and "rolled back" in message
    assert leftovers(before, snapshot(str(directory)), appliance_uuid, str(directory)) == []
    assert not directory.exists() and not namespace_exists(namespace_name(appliance_uuid))
    assert host_end(veth_name(appliance_uuid, 0)) is None


async def test_an_agent_that_fails_to_start_is_rolled_back(
    host: HostObjects, net: HostNetwork
) -> None:
    guest = host.bridge()
    await net.bridge_create(guest)
    appliance_uuid = host.appliance()
    spec = ApplianceSpec(
        appliance_uuid, (ApplianceNic(guest, "52:54:00:aa:00:01", "10.250.0.1", 24),)
    )
    directory = net.appliance_dir(appliance_uuid)
    before = snapshot(str(directory))
    dies = [sys.executable, "-c", "import sys; print('no config', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(AgentError) as failed:
        await net.appliance_create(spec, dies)
    message = str(failed.value)
    assert "step 'start the virtual-router agent' failed" in message
    assert "exited with status 3" in message and "no config" in message

    net.appliances.start_timeout = 0.3
    hangs = [sys.executable, "-c", "import time; time.sleep(60)"]
    with pytest.raises(AgentError, match=r"did not listen on .*agent\.sock within 0\.3s"):
        await net.appliance_create(spec, hangs)
    assert leftovers(before, snapshot(str(directory)), appliance_uuid, str(directory)) == []
    assert not directory.exists()
    assert host_end(veth_name(appliance_uuid, 0)) is None


# -- a NIC on a virtual port (agent.extension_points.PortPlugger) --------------------------
@threaded
def master_index(name: str) -> tuple[int, bool] | None:
    """(the index of the link's kernel master, 0 for none; up) of a host end, None if it is
    gone."""
    with IPRoute() as ipr:
        link = links.find(ipr, name)
        return None if link is None else (links.master_of(link), links.is_up(link))


@threaded
def enslave(name: str, bridge: str) -> None:
    with IPRoute() as ipr:
        link, master = links.find(ipr, name), links.find(ipr, bridge)
        assert link is not None and master is not None
        ipr.link("set", index=link["index"], master=master["index"])


async def virtual_port_appliance(
    host: HostObjects, net: HostNetwork
) -> tuple[ApplianceSpec, Path, Snapshot]:
    """An appliance's spec with a guest NIC on a (new) Linux bridge and a public one on an
    Open vSwitch access port of a switch that is never made (a test's plugger only
    records); its directory, and the host before it."""
    guest = host.bridge()
    await net.bridge_create(guest)
    appliance_uuid = host.appliance()
    switch = f"zslovs{suffix()}"
    host.links.append(switch)
    public_net = free_subnet()
    spec = ApplianceSpec(
        appliance_uuid,
        (
            ApplianceNic(guest, "52:54:00:aa:00:01", str(free_subnet()[1]), 24),
            ApplianceNic(
                switch, "52:54:00:aa:00:02", str(public_net[10]), 24, "public", "openvswitch", 42
            ),
        ),
        default_gateway=str(public_net[1]),
    )
    directory = net.appliance_dir(appliance_uuid)
    return spec, directory, snapshot(str(directory))


async def test_a_virtual_port_nic_is_plugged_by_its_plugger(
    host: HostObjects, net: HostNetwork
) -> None:
    """The veth of a NIC with a virtual port type has no Linux master: the plugger plugs
    it (and again on a repeat), check asks it, destroy has it unplug it."""
    plugger = RecordingPlugger()
    net.port_pluggers["openvswitch"] = plugger
    spec, directory, before = await virtual_port_appliance(host, net)
    appliance_uuid, guest, switch = (
        spec.appliance_uuid,
        spec.nics[0].bridge_name,
        spec.nics[1].bridge_name,
    )
    veth0, veth1 = veth_name(appliance_uuid, 0), veth_name(appliance_uuid, 1)

    info = await net.appliance_create(spec, stand_in_command())
    assert plugger.calls == [("plug", switch, veth1, 42)]
    assert host_end(veth0) == (guest, True)
    assert master_index(veth1) == (0, True)  # no Linux master: the plugger's port
    check_plugged(namespace_view(info.namespace), spec)
    status = await net.appliance_check(appliance_uuid)
    assert (status.agent_running, status.missing_nics) == (True, ())

    # Not plugged (or with another tag): missing; a repeat create plugs it again.
    plugger.ports.pop(veth1)
    assert (await net.appliance_check(appliance_uuid)).missing_nics == ("52:54:00:aa:00:02",)
    again = await net.appliance_create(spec, stand_in_command())
    assert again.agent_pid == info.agent_pid
    assert plugger.calls[1:] == [("plug", switch, veth1, 42)]
    assert (await net.appliance_check(appliance_uuid)).missing_nics == ()

    # A veth left in a Linux bridge (the NIC was a bridge port before) is released.
    enslave(veth1, guest)
    await net.appliance_create(spec, stand_in_command())
    assert master_index(veth1) == (0, True) and plugger.calls[-1] == ("plug", switch, veth1, 42)

    plugger.calls.clear()
    await net.appliance_destroy(appliance_uuid)
    assert veth1 in plugger.unplugged()
    assert [c for c in plugger.calls if c[0] != "unplug"] == []
    assert plugger.ports == {}
    assert leftovers(before, snapshot(str(directory)), appliance_uuid, str(directory)) == []
    assert host_end(veth0) is None and master_index(veth1) is None and not directory.exists()


class FailingPlugger(RecordingPlugger):
    def plug(self, bridge: str, port: str, vlan_id: int | None) -> None:
        super().plug(bridge, port, vlan_id)
        raise RuntimeError("the switch says no")


async def test_a_failing_plug_is_rolled_back_and_an_unknown_type_refused(
    host: HostObjects, net: HostNetwork
) -> None:
    spec, directory, before = await virtual_port_appliance(host, net)
    appliance_uuid = spec.appliance_uuid

    with pytest.raises(AgentError, match="no agent plugin plugs virtual ports of type openvswitch"):
        await net.appliance_create(spec, stand_in_command())
    assert not directory.exists() and not namespace_exists(namespace_name(appliance_uuid))

    plugger = FailingPlugger()
    net.port_pluggers["openvswitch"] = plugger
    with pytest.raises(AgentError) as failed:
        await net.appliance_create(spec, stand_in_command())
    message = str(failed.value)
    assert "step 'plug NIC 1 (52:54:00:aa:00:02)" in message
    assert "the switch says no" in message and "rolled back" in message
    assert veth_name(appliance_uuid, 1) in plugger.unplugged()
    assert leftovers(before, snapshot(str(directory)), appliance_uuid, str(directory)) == []
    assert not directory.exists() and not namespace_exists(namespace_name(appliance_uuid))
