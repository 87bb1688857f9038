"""nftables tables a lab owns alone (``zsl…_<lab id>``, e.g. the security groups'): named
by contracts.names, found by the lab's inventory and removed by its sweep, and never
another lab's.  The root part runs in a throwaway network namespace (its own ruleset)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from contracts.names import lab_id, lab_of_table, lab_table_name

LAB = lab_id("/var/tmp/zsl-lab-tables/data")
OTHER = lab_id("/var/tmp/zsl-lab-tables/data2")


def test_a_labs_table_names_its_lab_and_nothing_else_does() -> None:
    assert lab_table_name("zsl_sg_", LAB) == f"zsl_sg_{LAB}"
    assert lab_of_table(f"zsl_sg_{LAB}") == LAB
    assert lab_of_table(f"zsl_sgct_{OTHER}") == OTHER
    for name in ("zsl_host_nat", "zsl_vr_nat", f"x_{LAB}", f"zsl_sg_{LAB}x", "zsl_sg_zslXYZ"):
        assert lab_of_table(name) == "", name
    with pytest.raises(ValueError, match="starts with zsl and ends with _"):
        lab_table_name("sg_", LAB)


SCRIPT = """
import sys
from pathlib import Path
from agent.lab_cleanup import LabSweep
from agent.lab_inventory import LabFinder, inventory, remove_objects
from agentkit.nft import nft

data_dir, lab, other = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
nft(["-f", "-"], f'''
table bridge zsl_sg_{lab} {{}}
table inet zsl_sgct_{lab} {{}}
table inet zsl_sg_{other} {{}}
table inet zsl_test_nolab {{}}
''')
finder = LabFinder(data_dir)
assert finder.lab == lab
assert finder.nft_tables() == [("bridge", f"zsl_sg_{lab}"), ("inet", f"zsl_sgct_{lab}")]
tables = [o.name for o in inventory(finder, None) if o.kind == "nftTable"]
assert tables == [f"bridge zsl_sg_{lab}", f"inet zsl_sgct_{lab}"], tables
done = remove_objects(finder, None, [("nftTable", f"bridge zsl_sg_{lab}"),
                                     ("nftTable", f"inet zsl_sg_{other}")])
assert [o.name for o in done.removed] == [f"bridge zsl_sg_{lab}"], done
assert [o.name for o, _ in done.refused] == [f"inet zsl_sg_{other}"], done
swept = LabSweep(data_dir, report=lambda line: None)
swept.remove_nft_tables()
assert swept.swept.removed == [f"nftables table inet zsl_sgct_{lab}"], swept.swept
left = nft(["list", "tables"]).split()
assert f"zsl_sg_{other}" in left and "zsl_test_nolab" in left and lab not in " ".join(left), left
print("ok")
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a namespace")
def test_the_inventory_and_the_sweep_find_and_remove_only_the_labs_tables(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    netns = f"zsltest-tables-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        done = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", SCRIPT, str(data_dir),
             lab_id(data_dir), OTHER],
            capture_output=True, text=True, timeout=60, check=False,
            cwd=Path(__file__).resolve().parents[2],
        )  # fmt: skip
        assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=True)
