"""What `make test` / `make run` set up on the host: the parts later issues drive."""

from __future__ import annotations

import grp
import os
import stat
import subprocess
from pathlib import Path

import libvirt
import pytest

pytestmark = pytest.mark.system


def test_libvirtd_answers_on_qemu_system() -> None:
    conn = libvirt.open("qemu:///system")
    try:
        assert conn.getLibVersion() >= 9_000_000
        assert "kvm" in conn.getCapabilities() or "qemu" in conn.getCapabilities()
    finally:
        conn.close()


@pytest.mark.skipif(not Path("/dev/kvm").exists(), reason="no /dev/kvm on this host")
def test_dev_kvm_is_group_kvm_mode_0660() -> None:
    st = os.stat("/dev/kvm")
    assert grp.getgrgid(st.st_gid).gr_name == "kvm"
    assert stat.S_IMODE(st.st_mode) == 0o660


@pytest.mark.parametrize("tool", ["qemu-img", "dnsmasq", "nft", "busybox", "ovs-vsctl"])
def test_host_tools_installed(tool: str) -> None:
    assert subprocess.run(["which", tool], capture_output=True).returncode == 0, tool
