"""Which lab an agent belongs to; the identity itself is :func:`contracts.names.lab_id`.

Several labs (management nodes with their own data dirs) may share one host.
Everything a lab makes on the host carries its identity, so that a lab removes
only what is its own (the shared ``inet zsl_host_nat`` table included) and a
reset recognises what an earlier lab on the same data dir left behind even
when that data dir was deleted by hand.  The identity is derived from the
absolute path of the node's data dir, so it survives the deletion of the dir.
"""

from __future__ import annotations

from pathlib import Path


def default_lab_dir(agent_data_dir: Path) -> Path:
    """The node data dir an agent belongs to when none is given: the local KVM agent's
    dir is ``<data_dir>/agent``, a simulator's ``<data_dir>/simulators/<host uuid>``."""
    agent_data_dir = Path(agent_data_dir).absolute()
    if agent_data_dir.parent.name == "simulators":
        return agent_data_dir.parent.parent
    return agent_data_dir.parent
