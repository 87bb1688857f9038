"""How a reset's sweep recognises a lab's objects: by a path under its data dir, never by a
path that merely starts with the same characters (another lab's ``data2``, ``/srv/data``)."""

from __future__ import annotations

from pathlib import Path

from agent.lab_cleanup import (
    appliances_named,
    domain_names_path_under,
    is_project_program,
    is_under,
    names_path_under,
)

DATA = Path("/var/tmp/lab/data")


def test_is_under_takes_whole_path_components() -> None:
    assert is_under("/var/tmp/lab/data", DATA)
    assert is_under("/var/tmp/lab/data/agent/agent.log", DATA)
    assert is_under("/var/tmp/lab/data/node.lock (deleted)", DATA)
    assert not is_under("/var/tmp/lab/data2/agent", DATA)
    assert not is_under("/srv/var/tmp/lab/data/agent", DATA)
    assert not is_under("data/agent", DATA)


def test_arguments_and_option_values_name_the_data_dir() -> None:
    assert names_path_under(["python", "-m", "agent.main", "--data-dir", f"{DATA}/agent"], DATA)
    assert names_path_under(["dnsmasq", f"--conf-file={DATA}/agent/appliances/u/c"], DATA)
    assert not names_path_under(["dnsmasq", "--conf-file=/var/tmp/lab/data2/a/c"], DATA)
    assert not names_path_under(["python", "-m", "agent.main", "--port", "7070"], DATA)


def test_project_programs_only() -> None:
    assert is_project_program(["/venv/bin/python3", "-m", "virtual_router.main", "--socket"])
    assert is_project_program(["/usr/sbin/dnsmasq", "--keep-in-foreground"])
    assert is_project_program(["/venv/bin/python", "/venv/bin/zstack-lite", "serve"])
    assert not is_project_program(["vim", f"{DATA}/config.toml"])
    assert not is_project_program(["/usr/bin/qemu-system-x86_64", "-name", "zsl-x"])


def test_routers_named_by_their_directory() -> None:
    argv = [
        "python",
        "-m",
        "virtual_router.main",
        "--data-dir",
        f"{DATA}/agent/appliances/0123456789abcdef0123456789abcdef",
        f"--conf-file={DATA}/simulators/h/appliances/fedcba9876543210fedcba9876543210/x.conf",
        f"{DATA}/appliances",
        "/var/tmp/lab/data2/agent/appliances/ffffffffffffffffffffffffffffffff",
    ]
    assert appliances_named(argv, DATA) == {
        "0123456789abcdef0123456789abcdef",
        "fedcba9876543210fedcba9876543210",
    }


def test_a_domain_is_the_labs_when_its_definition_names_a_file_under_the_data_dir() -> None:
    xml = """<domain type='qemu'><name>zsl-abc</name><devices>
      <disk type='file'><source file='{disk}'/></disk>
      <serial type='pty'><log file='{log}' append='on'/></serial>
    </devices></domain>"""
    ours = xml.format(disk=f"{DATA}/primary-storage/a.qcow2", log="/tmp/x.log")
    by_log = xml.format(disk="/images/a.qcow2", log=f"{DATA}/agent/console/abc.log")
    other = xml.format(
        disk="/var/tmp/lab/data2/primary-storage/a.qcow2", log="/srv/var/tmp/lab/data/x.log"
    )
    assert domain_names_path_under(ours, DATA)
    assert domain_names_path_under(by_log, DATA)
    assert not domain_names_path_under(other, DATA)
    assert not domain_names_path_under("not xml <", DATA)


def test_the_lab_inventory_lists_data_volume_directories_by_volume_uuid(tmp_path: Path) -> None:
    from agent.lab_inventory import FILE, HostObject, LabFinder

    storage = tmp_path / "data" / "ps"
    volume = "ab" * 16
    (storage / "datavolumes" / f"vol-{volume}").mkdir(parents=True)
    (storage / "rootvolumes" / f"vm-{'cd' * 16}").mkdir(parents=True)
    found = LabFinder(tmp_path / "data").files([str(storage)])
    assert HostObject(FILE, f"{storage}/datavolumes/vol-{volume}", volume, "data volume") in found
    assert HostObject(FILE, f"{storage}/rootvolumes/vm-{'cd' * 16}", "cd" * 16, "volumes") in found
