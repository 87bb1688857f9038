"""zcli end to end: the real console script, a client of the node service, run as
subprocesses on a temp data dir."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.kernel.data_dir import running_pid
from core.kernel.node import ManagementNode
from tests.conftest import load_props, write_config
from tests.core.test_zcli_output import yaml_python
from tests.service_lab import ZCLI, ServiceLab, service_lab

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
    assert count.json()["total"] == 6  # kvm: 3, vm: 3
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


def test_resources_by_name(lab: ServiceLab) -> None:
    z1 = lab.ok("CreateZone", "name=z1")
    twins = [lab.ok("CreateZone", "name=twin")["uuid"] for _ in range(2)]
    cluster = lab.ok("CreateCluster", "name=c1", "zoneUuid=z1")  # a uuid parameter, by name
    assert cluster["zoneUuid"] == z1["uuid"]
    changed = lab.ok("ChangeZoneState", "name=z1", "stateEvent=disable")  # name= for uuid=
    assert changed["uuid"] == z1["uuid"] and changed["state"] == "Disabled"
    assert lab.ok("UpdateZone", "uuid=z1", "name=z1b")["uuid"] == z1["uuid"]  # name: the new one

    ambiguous, missing, missing_ref, both = lab.zcli_many(
        ["DeleteZone", "name=twin"],
        ["DeleteZone", "name=nope"],
        ["CreateCluster", "name=c2", "zoneUuid=nowhere"],
        ["ChangeZoneState", "name=z1b", f"uuid={z1['uuid']}", "stateEvent=enable"],
    )
    assert ambiguous.rc == 1
    assert "parameter name of DeleteZone: 2 ZoneVOs are named 'twin':" in ambiguous.err
    assert all(f"{uuid} (Enabled)" in ambiguous.err for uuid in twins)
    assert (
        missing.rc == 1 and "parameter name of DeleteZone: no ZoneVO is named 'nope'" in missing.err
    )
    assert missing_ref.rc == 1
    assert "parameter zoneUuid of CreateCluster: no ZoneVO is named 'nowhere'" in missing_ref.err
    assert both.rc == 1 and "ChangeZoneState takes uuid or name, not both" in both.err
    zones = {z["uuid"]: z for z in lab.ok("QueryZone")}
    assert set(twins) <= set(zones)  # nothing was deleted
    assert zones[z1["uuid"]]["state"] == "Disabled"  # nor enabled
    assert [c["name"] for c in lab.ok("QueryCluster")] == ["c1"]

    helped = lab.zcli("help", "DeleteZone")
    assert "name  string: the ZoneVO's name, instead of uuid" in helped.out
    assert "uuid  string, required, uuid or name of a ZoneVO" in helped.out


def test_a_vm_by_name(sim_node_service: ServiceLab, tmp_path: Path) -> None:
    lab = sim_node_service
    image = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    lab.ok("AddImage", "name=tiny", f"url={image}")
    vm = lab.ok(
        "CreateVmInstance",
        "name=web2",
        "imageUuid=tiny",
        "instanceOfferingUuid=small",
        "l3NetworkUuids=private",  # a list of uuids, by name
    )
    [private] = lab.ok("QueryL3Network", "name=private")
    assert vm["state"] == "Running" and vm["defaultL3NetworkUuid"] == private["uuid"]
    stopped = lab.ok("StopVmInstance", "name=web2", "type=cold")
    assert stopped["uuid"] == vm["uuid"] and stopped["state"] == "Stopped"


def zcli_on_a_terminal(lab: ServiceLab, *args: str) -> tuple[int, str, str]:
    """zcli with its stdout on a pseudo-terminal 160 columns wide: exit status, output,
    errors.  The node must run already (a node it started would hold the terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [str(ZCLI), *args],
        env={**lab.env, "COLUMNS": "160"},
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(slave)
    out, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                continue
            try:
                data = os.read(master, 1 << 16)
            except OSError:  # EIO: zcli closed the terminal
                break
            if not data:
                break
            out += data
        rc = proc.wait(timeout=60)
    finally:
        os.close(master)
    return rc, out.decode().replace("\r\n", "\n"), proc.communicate()[1]


def test_output_formats(lab: ServiceLab) -> None:
    lab.ok("CreateZone", "name=z1", "description=first zone")
    lab.ok("CreateZone", "name=yes")  # a name YAML would read as true unless quoted
    [z1] = lab.ok("QueryZone", "name=z1")

    rc, table, err = zcli_on_a_terminal(lab, "QueryZone")
    assert rc == 0, err
    header, *rows = table.splitlines()
    assert header.split() == ["name", "uuid", "state"]  # the kind's columns
    assert rows[0].split() == ["z1", z1["uuid"], "Enabled"]
    assert rows[1].split()[0] == "yes" and len(rows) == 2

    rc, one, err = zcli_on_a_terminal(lab, "UpdateZone", "uuid=z1", "description=the first")
    assert rc == 0, err
    fields = [line.split(maxsplit=1) for line in one.splitlines()]  # one: a field a line
    assert fields[:3] == [["name", "z1"], ["uuid", z1["uuid"]], ["state", "Enabled"]]
    assert ["description", "the first"] in fields

    rc, refused, err = zcli_on_a_terminal(lab, "DeleteZone", "name=nope")
    assert rc == 1 and refused == ""  # on a terminal, the error alone, on stderr
    assert err.startswith("Error SYS.1008: parameter name of DeleteZone: no ZoneVO is named")

    piped, as_table, as_yaml, count, yaml_error = lab.zcli_many(
        ["QueryZone"],
        ["-o", "table", "QueryZone", "name=z1"],
        ["--output", "yaml", "QueryZone"],
        ["-o", "table", "QueryGlobalConfig", "count=true", "category=kvm"],
        ["-o", "yaml", "DeleteZone", "name=nope"],
    )
    assert piped.rc == 0 and piped.json()["inventories"][0]["uuid"] == z1["uuid"]  # JSON
    assert as_table.rc == 0 and as_table.out.splitlines()[0].split() == ["name", "uuid", "state"]
    assert count.out == "total  3\n"
    assert as_yaml.rc == 0
    lines = as_yaml.out.splitlines()
    assert lines[:3] == ["success: true", "inventories:", "- state: Enabled"]
    assert "  name: z1" in lines and '  name: "yes"' in lines
    assert yaml_error.rc == 1 and "success: false" in yaml_error.out.splitlines()
    assert "no ZoneVO is named 'nope'" in yaml_error.err
    python = yaml_python()
    if python is not None:  # read back by PyYAML: the same data as the JSON
        read = subprocess.run(
            [python, "-c", "import json, sys, yaml; print(json.dumps(yaml.safe_load(sys.stdin)))"],
            input=as_yaml.out,
            capture_output=True,
            text=True,
            check=True,
        )
        assert json.loads(read.stdout) == piped.json()


def complete(script: Path, line: str) -> list[str]:
    """What bash completes for ``line`` with the script (the cursor at its end)."""
    probe = f'source {script}\nCOMP_LINE="{line}"; COMP_POINT=${{#COMP_LINE}}\n_zcli\n'
    probe += 'printf "%s\\n" "${COMPREPLY[@]}"\n'
    res = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout.split()


def test_completion_scripts(lab: ServiceLab, tmp_path: Path) -> None:
    bash, zsh, every, fish = lab.zcli_many(
        ["completion", "bash"], ["completion", "zsh"], ["help"], ["completion", "fish"]
    )
    assert lab.node_pid is None  # made without a node
    assert bash.rc == 0 and zsh.rc == 0, bash.err + zsh.err
    assert fish.rc == 2 and "usage: zcli completion bash|zsh" in fish.err
    apis = [line.split()[0] for line in every.out.splitlines()[2:] if line.strip()]
    script = tmp_path / "zcli.bash"
    script.write_text(bash.out)
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert complete(script, "zcli ") == ["help", "completion", *apis]
    assert complete(script, "zcli StopVm") == ["StopVmInstance"]
    assert complete(script, "zcli --no-start StopVmInstance ") == [
        "uuid=", "type=", "stopTimeout=", "name="
    ]  # fmt: skip
    assert complete(script, "zcli CreateVmInstance name=web1 im") == ["imageUuid="]
    assert complete(script, "zcli CreateZone ") == [
        "name=",
        "description=",
        "systemTags=",
        "userTags=",
    ]
    assert complete(script, "zcli QueryZone s") == ["start=", "sortBy=", "sortDirection="]
    assert complete(script, "zcli StopVmInstance name=w") == []  # values are the user's
    assert complete(script, "zcli -o ") == ["table", "json", "yaml"]
    assert complete(script, "zcli help StopV") == ["StopVmInstance"]
    assert complete(script, "zcli completion ") == ["bash", "zsh"]
    assert "compdef _zcli zcli" in zsh.out
    assert "    StopVmInstance 'uuid= type= stopTimeout= name='" in zsh.out.splitlines()
    assert all(f"    {api} '" in zsh.out for api in apis)
    if zsh_bin := shutil.which("zsh"):
        (tmp_path / "zcli.zsh").write_text(zsh.out)
        assert subprocess.run([zsh_bin, "-n", str(tmp_path / "zcli.zsh")]).returncode == 0
