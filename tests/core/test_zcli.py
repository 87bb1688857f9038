"""zcli end to end: the real console script, a client of the node service, run as
subprocesses on a temp data dir."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from core.kernel.data_dir import running_pid
from core.kernel.node import ManagementNode
from tests.conftest import load_props, write_config
from tests.service_lab import ServiceLab, service_lab

STARTED = "zcli: started the management node on"


@pytest.fixture
def lab(node_service: ServiceLab) -> ServiceLab:
    return node_service


def test_the_first_call_starts_the_service_and_says_so_once(lab: ServiceLab) -> None:
    assert lab.node_pid is None
    first = lab.zcli("UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=3")
    assert first.rc == 0, first.err
    assert first.json()["inventory"]["value"] == "3"
    assert first.err.count(STARTED) == 1
    node = lab.node_pid
    assert node and node != first.pid  # zcli did not become the node: a service did
    second = lab.zcli("QueryGlobalConfig", "category=kvm", "name=vm.migrationQuantity")
    assert second.rc == 0 and second.err == ""
    assert [r["value"] for r in second.json()["inventories"]] == ["3"]
    assert lab.node_pid == node  # the same node serves every call


def test_refusals_keep_the_old_value(lab: ServiceLab) -> None:
    zero, abc = lab.zcli_many(
        ["UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=0"],
        ["UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", "value=abc"],
    )
    assert zero.rc == 1, zero.err
    assert (
        "Error SYS.1007: value '0' of global config kvm.vm.migrationQuantity breaks the "
        "rule: number in range [1, 2147483647]"
    ) in zero.err
    assert zero.json()["success"] is False
    assert abc.rc == 1, abc.err
    assert "value 'abc' of global config kvm.vm.migrationQuantity is not an integer" in abc.err
    [row] = lab.ok("QueryGlobalConfig", "category=kvm", "name=vm.migrationQuantity")
    assert row["value"] == "2"


def test_delete_inherent_tag_fails(lab: ServiceLab) -> None:
    [tag] = lab.ok("QuerySystemTag", "tag~=zstack-lite::version::%")
    res = lab.zcli("DeleteTag", f"uuid={tag['uuid']}")
    assert res.rc == 1
    assert f"tag[uuid:{tag['uuid']}] is an inherent system tag, can not be removed" in res.err
    assert len(lab.ok("QuerySystemTag", f"uuid={tag['uuid']}")) == 1


def test_system_and_user_tags_on_create(lab: ServiceLab) -> None:
    zone = lab.ok("CreateZone", "name=z1", "userTags=rack-1,blue")
    tags = lab.ok("QueryUserTag", f"resourceUuid={zone['uuid']}")
    assert sorted(t["tag"] for t in tags) == ["blue", "rack-1"]
    res = lab.zcli("CreateZone", "name=z2", "systemTags=no::such::tag")
    assert res.rc == 1 and "no::such::tag" in res.err
    assert [z["name"] for z in lab.ok("QueryZone")] == ["z1"]


def bus_apis(directory: Path) -> list[str]:
    """The APIs of a node with the installed plugins (started here, on its own data dir)."""
    props = load_props(write_config(directory))

    async def names() -> list[str]:
        async with ManagementNode(props, serve_socket=False) as node:
            assert node.bus is not None
            return list(node.bus.messages())

    return asyncio.run(names())


def test_help_starts_no_node_and_lists_what_the_node_would(lab: ServiceLab, tmp_path: Path) -> None:
    every, one = lab.zcli_many(["help"], ["help", "UpdateGlobalConfig"])
    assert lab.node_pid is None  # help never starts a node
    assert every.rc == 0, every.err
    listed = [line.split()[0] for line in every.out.splitlines()[2:] if line.strip()]
    assert listed == bus_apis(tmp_path / "bus")  # every API the bus has, sorted
    assert "Change a global config; the value must pass the config's rules." in every.out
    assert one.rc == 0, one.err
    assert one.out.startswith("UpdateGlobalConfig: Change a global config")
    assert "category  string, required, max length 64" in one.out
    # with a node running, help asks it
    lab.ok("QueryZone")
    again = lab.zcli("help")
    assert again.rc == 0 and again.out == every.out


def test_usage_errors(lab: ServiceLab) -> None:
    unknown, malformed, bad_cond, unknown_param, bad_param, no_api, count, help_unknown = (
        lab.zcli_many(
            ["NoSuchApi", "a=b"],
            ["UpdateGlobalConfig", "category"],
            ["QueryGlobalConfig", "???"],
            ["UpdateGlobalConfig", "categry=kvm"],
            ["QueryZone", "limit=-1"],
            [],
            ["QueryGlobalConfig", "count=true", "category?=kvm,vm"],
            ["help", "Nope"],
        )
    )
    assert unknown.rc == 2 and "no API named NoSuchApi" in unknown.err
    assert malformed.rc == 2
    assert "argument 'category' is not of the form key=value" in malformed.err
    assert bad_cond.rc == 2 and "'???' is not of the form" in bad_cond.err
    assert unknown_param.rc == 2
    assert "UpdateGlobalConfig has no parameter categry" in unknown_param.err
    assert bad_param.rc == 1  # the API itself refuses it
    assert "parameter limit of QueryZone must be in the range" in bad_param.err
    assert no_api.rc == 2  # argparse: the API name is required
    assert count.rc == 0, count.err
    assert count.json()["total"] == 5  # kvm: 2, vm: 3
    assert help_unknown.rc == 2 and "no API named Nope" in help_unknown.err


def test_no_start_fails_clearly_without_a_node(lab: ServiceLab) -> None:
    res = lab.zcli("--no-start", "QueryZone")
    assert res.rc == 3
    assert f"no management node runs on {lab.data_dir}" in res.err
    assert "zstack-lite start" in res.err
    assert lab.node_pid is None
    lab.ok("QueryZone")  # starts it
    assert lab.zcli("--no-start", "QueryZone").rc == 0


def test_bad_config_is_a_usage_error(lab: ServiceLab, tmp_path: Path) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text('[core]\ndata_dir = "data"\nbogus = 1\n')
    res = lab.zcli("--config", str(broken), "QueryZone")
    assert res.rc == 2
    assert "unknown global property core.bogus" in res.err


def test_concurrent_first_calls_start_one_node(lab: ServiceLab) -> None:
    values = [str(v) for v in range(3, 9)]
    results = lab.zcli_many(
        *(
            ["UpdateGlobalConfig", "category=kvm", "name=vm.migrationQuantity", f"value={v}"]
            for v in values
        )
    )
    for res in results:
        assert res.rc == 0, res.err
        assert res.json()["inventory"]["value"] in values
    assert sum(res.err.count(STARTED) for res in results) == 1
    node = lab.node_pid
    assert node and node not in {r.pid for r in results}
    assert len(lab.ok("QueryManagementNode")) == 1


def test_zcli_imports_only_what_a_client_needs(lab: ServiceLab) -> None:
    lab.ok("QueryZone")  # the node runs
    probe = (
        "import sys\n"
        "from core import zcli\n"
        "rc = zcli.main(['QueryZone'])\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules}\n"
        "               & {'sqlalchemy', 'libvirt', 'textual', 'aiohttp', 'alembic', 'pyroute2'})\n"
        "print('HEAVY', heavy, rc, file=sys.stderr)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", probe], env=lab.env, capture_output=True, text=True, timeout=60
    )
    assert "HEAVY [] 0" in res.stderr, res.stderr
    assert running_pid(lab.data_dir) == lab.node_pid


def test_zcli_of_two_labs_reach_their_own_nodes(lab: ServiceLab, tmp_path: Path) -> None:
    other = service_lab(tmp_path / "other")
    try:
        lab.ok("CreateZone", "name=mine")
        other.ok("CreateZone", "name=theirs")
        assert [z["name"] for z in lab.ok("QueryZone")] == ["mine"]
        assert [z["name"] for z in other.ok("QueryZone")] == ["theirs"]
        assert lab.node_pid != other.node_pid
    finally:
        other.stop()
