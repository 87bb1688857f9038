"""A simulator lab whose private network gets user data from the router: the router's
simulated agent writes what its metadata server would serve to ``userdata.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from zsl_userdata.vr_agent import SIMULATED_STATE

from core.kernel.node import ManagementNode
from tests.conftest import ok
from tests.core.virtual_router.conftest import NetLab, make_net_lab


@dataclass
class UserdataLab:
    net: NetLab

    @property
    def node(self) -> ManagementNode:
        return self.net.node

    async def served(self) -> dict[str, Any]:
        """What the router's metadata server serves: {guestMac, entries by IP}."""
        router = await self.net.router()
        assert router is not None
        path = self.net.router_dir(router) / SIMULATED_STATE
        return json.loads(path.read_text()) if path.exists() else {}


async def attach_userdata(node: ManagementNode, l3_uuid: str) -> None:
    [provider] = await ok(node, "QueryNetworkServiceProvider", conditions=["type=VirtualRouter"])
    await ok(
        node,
        "AttachNetworkServiceToL3Network",
        l3NetworkUuid=l3_uuid,
        networkServices={provider["uuid"]: ["Userdata"]},
    )


@pytest.fixture
async def ud_lab(node: ManagementNode, tmp_path: Path) -> UserdataLab:
    net = await make_net_lab(node, tmp_path)
    await attach_userdata(node, net.private_l3["uuid"])
    return UserdataLab(net)
