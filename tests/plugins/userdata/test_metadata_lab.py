"""User data on the real host (root, qemu:///system, namespaces): the acceptance of the
user-data part of issue 15.

Two tiny guests on a private network served DHCP, DNS, SNAT and Userdata by a virtual
router.  alpha's user data is a script: it prints HELLO-42 on its console at first boot
(the tiny guest reads the NoCloud seed from its SMBIOS serial, fetches its user data from
169.254.169.254 and runs it).  Then Debian's own cloud-init NoCloud datasource code
(cloud-init 22.4.2 from Debian 12, unpacked into build/, never installed) runs in a
namespace on the private bridge holding alpha's IP and MAC (alpha paused meanwhile): it
reads alpha's meta-data and user-data, not bravo's; an address the router does not know
gets nothing.  The metadata address deleted by hand in the router comes back.

Only loopback and namespaces made here carry traffic; every object made is removed, also
when the test fails (the namespace by its ``zsl-t`` prefix, the rest by ``running_node``).
"""

from __future__ import annotations

import base64
import email
import json
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from zsl_userdata.contract import METADATA_IP, SEED

from agent.guest_image import USER_DATA_BEGIN, USER_DATA_END
from contracts.names import bridge_name, namespace_name
from tests.conftest import ok
from tests.system.net_lab import (
    REPO,
    HostState,
    Lab,
    in_ns,
    kill_all,
    leftovers,
    running_node,
    sh,
    unrelated,
    virsh,
    wait_for,
)

pytestmark = pytest.mark.system

SCRIPT = b"#!/bin/sh\necho HELLO-$((6*7))\n"
BRAVO_DATA = b"#cloud-config\nhostname: not-alpha\n"
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBRAVO bravo@lab"
CLOUD_INIT_DIR = REPO / "build" / "cloud-init"
GATEWAY = "10.77.0.1"

_NOCLOUD = """
import json, sys, tempfile
from unittest import mock
sys.path.insert(0, sys.argv[1])
from cloudinit import dmi, helpers, util
from cloudinit.sources import DataSourceNoCloud as nocloud

seed = sys.argv[2]
# No cidata device is looked for (blkid on the host is none of its business).
cfg = {"datasource": {n: {"fs_label": None} for n in ("NoCloud", "NoCloudNet")}}
with tempfile.TemporaryDirectory(prefix="zsl-ci-") as tmp, \\
        mock.patch.object(dmi, "read_dmi_data", return_value=seed), \\
        mock.patch.object(util, "get_cmdline", return_value="console=ttyS0"):
    paths = helpers.Paths({"cloud_dir": tmp, "run_dir": tmp + "/run"})
    ds = nocloud.DataSourceNoCloudNet(cfg, None, paths)
    found = ds._get_data()
print(json.dumps({
    "found": found,
    "seed": ds.seed,
    "metadata": {k: str(v) for k, v in (ds.metadata or {}).items()},
    "userdata": (ds.userdata_raw or b"").decode(errors="replace")
        if isinstance(ds.userdata_raw, bytes) else ds.userdata_raw,
}))
"""


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def cloud_init_code() -> Path:
    """Debian's cloud-init package, downloaded and unpacked (never installed: its boot
    services would run on the host); the directory of its Python package."""
    root = CLOUD_INIT_DIR / "root"
    package = root / "usr" / "lib" / "python3" / "dist-packages"
    if (package / "cloudinit" / "sources" / "DataSourceNoCloud.py").is_file():
        return package
    CLOUD_INIT_DIR.mkdir(parents=True, exist_ok=True)
    debs = sorted(CLOUD_INIT_DIR.glob("cloud-init_*.deb"))
    if not debs:
        subprocess.run(["apt-get", "download", "cloud-init"], cwd=CLOUD_INIT_DIR, check=True)
        debs = sorted(CLOUD_INIT_DIR.glob("cloud-init_*.deb"))
    sh("dpkg-deb", "-x", str(debs[-1]), str(root))
    return package


class FakeGuest:
    """A namespace ``zsl-t<hex>`` on a bridge, whose interface has a guest's MAC and IP
    and a default route via the router: what the router sees is that guest."""

    def __init__(self) -> None:
        self.ns = f"zsl-t{secrets.token_hex(3)}"
        self.host_end, self.inner = f"{self.ns}h", f"{self.ns}g"

    def create(self, bridge: str, mac: str, ip: str, gateway: str) -> None:
        sh("ip", "netns", "add", self.ns)
        sh("ip", "link", "add", self.host_end, "type", "veth", "peer", "name", self.inner)
        sh("ip", "link", "set", self.inner, "netns", self.ns)
        sh("ip", "-n", self.ns, "link", "set", self.inner, "address", mac)
        sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.ns, "link", "set", self.inner, "up")
        self.readdress(ip, gateway)
        sh("ip", "link", "set", self.host_end, "master", bridge)
        sh("ip", "link", "set", self.host_end, "up")

    def readdress(self, ip: str, gateway: str, mac: str = "") -> None:
        if mac:
            sh("ip", "-n", self.ns, "link", "set", self.inner, "down")
            sh("ip", "-n", self.ns, "link", "set", self.inner, "address", mac)
            sh("ip", "-n", self.ns, "link", "set", self.inner, "up")
        sh("ip", "-n", self.ns, "addr", "flush", "dev", self.inner)
        sh("ip", "-n", self.ns, "addr", "add", f"{ip}/24", "dev", self.inner)
        sh("ip", "-n", self.ns, "route", "replace", "default", "via", gateway)

    def get(self, path: str) -> tuple[int, str]:
        """(HTTP status, body) of GET http://169.254.169.254<path> from the namespace."""
        code = (
            "import sys, urllib.request, urllib.error\n"
            "try:\n"
            "    r = urllib.request.urlopen(sys.argv[1], timeout=10)\n"
            "    print(r.status); print(r.read().decode(), end='')\n"
            "except urllib.error.HTTPError as e:\n"
            "    print(e.code)\n"
        )
        out = in_ns(self.ns, sys.executable, "-c", code, f"http://{METADATA_IP}{path}")
        status, _, body = out.partition("\n")
        return int(status), body

    def nocloud(self, package: Path) -> dict[str, Any]:
        """What Debian's cloud-init NoCloud datasource reads from here, seeded as a VM is."""
        out = in_ns(
            self.ns, "timeout", "60", "/usr/bin/python3", "-c", _NOCLOUD, str(package), SEED
        )
        result: dict[str, Any] = json.loads(out)
        return result

    def destroy(self) -> None:
        if self.ns in sh("ip", "netns", "list", check=False).split():
            kill_all(int(p) for p in sh("ip", "netns", "pids", self.ns, check=False).split())
            sh("ip", "netns", "del", self.ns, check=False)
        if sh("ip", "-o", "link", "show", self.host_end, check=False):
            sh("ip", "link", "del", self.host_end, check=False)


async def test_user_data_reaches_tiny_guests_and_debian_cloud_init() -> None:
    package = cloud_init_code()
    async with running_node("ud") as lab:
        before = HostState.now()
        fake = FakeGuest()
        lab.owned.prefixes.add(fake.ns)
        try:
            await lab.make_networks()
            await scenario(lab, fake, package)
            await lab.delete_ours()
        finally:
            fake.destroy()
        after = HostState.now()
        print(f"zsl objects of other sessions (tolerated): {unrelated(before, after, lab.owned)}")
        assert leftovers(before, after, lab.owned) == {}


async def scenario(lab: Lab, fake: FakeGuest, package: Path) -> None:
    node, private = lab.node, lab.networks["private"]
    [provider] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    await ok(
        node,
        "AttachNetworkServiceToL3Network",
        l3NetworkUuid=private["uuid"],
        networkServices={provider["uuid"]: ["Userdata"]},
    )
    alpha = await lab.create_vm("alpha", userData=b64(SCRIPT))
    bravo = await lab.create_vm("bravo", userData=b64(BRAVO_DATA), systemTags=[f"sshkey::{KEY}"])
    [alpha_nic], [bravo_nic] = await lab.nics(alpha["uuid"]), await lab.nics(bravo["uuid"])

    # The domain carries the seed; the tiny guest ran its script at first boot.
    assert f"<entry name='serial'>{SEED}</entry>" in virsh("dumpxml", f"zsl-{alpha['uuid']}")
    console, log = await lab.console(alpha["uuid"])

    def ran() -> str:
        text = log.read_text(errors="replace") if log.exists() else ""
        return text if USER_DATA_END in text else ""

    try:
        text = await wait_for(ran, "alpha's user data to run", timeout=180)
    except AssertionError as exc:
        seen = log.read_text(errors="replace") if log.exists() else "(no console log)"
        raise AssertionError(f"{exc}; alpha's console:\n{seen}") from None
    framed = text[text.index(USER_DATA_BEGIN) : text.index(USER_DATA_END)]
    assert "HELLO-42" in framed, text
    assert f"{USER_DATA_END} rc=0" in text
    await console.ready()
    rc, out = await console.run("cat /sys/class/dmi/id/product_serial")
    assert rc == 0 and SEED in out

    # Debian's cloud-init, from alpha's address and MAC (alpha paused, so that the bridge
    # and the router see only the namespace), reads alpha's documents.
    [router] = await lab.routers()
    await ok(node, "PauseVmInstance", uuid=alpha["uuid"])
    fake.create(
        bridge_name(private["l2NetworkUuid"]), alpha_nic["mac"], alpha_nic["ip"], "10.77.0.1"
    )
    read = fake.nocloud(package)
    assert read["found"] is True, read
    assert read["seed"].endswith(f"http://{METADATA_IP}/nocloud/"), read
    assert read["metadata"]["instance-id"] == alpha["uuid"]
    assert read["metadata"]["local-hostname"] == "alpha"
    assert read["userdata"] == SCRIPT.decode()
    assert fake.get("/latest/meta-data/instance-id") == (200, alpha["uuid"])
    assert fake.get("/2009-04-04/user-data") == (200, SCRIPT.decode())
    status, body = fake.get("/nocloud/user-data")
    assert status == 200 and "not-alpha" not in body and KEY not in body

    # The metadata address removed by hand comes back (the agent's watchdog).
    ns = namespace_name(router["uuid"])
    guest_dev = next(
        line.split()[1]
        for line in in_ns(ns, "ip", "-o", "-4", "addr", "show").splitlines()
        if " 10.77.0.1/" in line
    )
    in_ns(ns, "ip", "addr", "del", f"{METADATA_IP}/32", "dev", guest_dev)
    await wait_for(
        lambda: f"{METADATA_IP}/32" in in_ns(ns, "ip", "-o", "addr", "show", "dev", guest_dev),
        "the metadata address restored",
        30,
    )
    assert await wait_for(
        lambda: fake.get("/latest/meta-data/local-hostname")[0] == 200,
        "the metadata server answering again",
        30,
    )

    # From bravo's address and MAC (bravo paused), bravo's documents: its SSH key is a
    # second cloud-config part.
    await ok(node, "ResumeVmInstance", uuid=alpha["uuid"])
    await ok(node, "PauseVmInstance", uuid=bravo["uuid"])
    fake.readdress(bravo_nic["ip"], GATEWAY, bravo_nic["mac"])
    read = fake.nocloud(package)
    assert read["metadata"]["instance-id"] == bravo["uuid"], read
    parts = [
        p.get_payload(decode=True).decode()
        for p in email.message_from_string(read["userdata"]).walk()
        if not p.is_multipart()
    ]
    assert parts == [BRAVO_DATA.decode(), f'#cloud-config\nssh_authorized_keys:\n  - "{KEY}"\n']

    # An address the router serves nobody gets nothing.
    fake.readdress("10.77.0.250", GATEWAY)
    assert fake.get("/nocloud/meta-data")[0] == 404
    assert fake.get("/latest/user-data")[0] == 404
    fake.destroy()
    await ok(node, "ResumeVmInstance", uuid=bravo["uuid"])
