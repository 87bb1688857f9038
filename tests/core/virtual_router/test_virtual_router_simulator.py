"""VMs on a private network served by the virtual router, on a simulator host."""

from __future__ import annotations

from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab


async def test_vms_get_ips_and_the_router_serves_them(net_lab: NetLab) -> None:
    node = net_lab.node
    a = await net_lab.create_vm("web-1")
    b = await net_lab.create_vm("web-2")
    nics = {n["vmInstanceUuid"]: n for n in await ok(node, "QueryVmNic")}
    assert nics[a["uuid"]]["ip"] == "10.10.0.2"
    assert nics[b["uuid"]]["ip"] == "10.10.0.3"
    router = await net_lab.router()
    assert router is not None
    assert (router["state"], router["status"]) == ("Running", "Connected")
    assert await net_lab.served() == {
        nics[a["uuid"]]["mac"]: "10.10.0.2",
        nics[b["uuid"]]["mac"]: "10.10.0.3",
    }
    hosts = (net_lab.router_dir(router) / "addn-hosts").read_text()
    assert "10.10.0.2 web-1.lab.lan web-1" in hosts

    await ok(node, "StopVmInstance", uuid=a["uuid"])
    assert await net_lab.served() == {nics[b["uuid"]]["mac"]: "10.10.0.3"}
    await ok(node, "StartVmInstance", uuid=a["uuid"])
    assert set(await net_lab.served()) == {nics[a["uuid"]]["mac"], nics[b["uuid"]]["mac"]}
