from __future__ import annotations

from typing import ClassVar

from core.host.models import HostVO
from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage

GiB = 1024**3


class AddKVMHost(ApiMessage):
    """Add a KVM host driven by its agent (on this machine, the node starts the agent)."""

    tag_resource_type: ClassVar[str] = "HostVO"
    timeout = 600.0
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    cluster_uuid: str = param(required=True, resource_type="ClusterVO")
    management_ip: str = param(default="127.0.0.1", max_length=255, non_empty=True)
    agent_port: int = param(
        default=0,
        number_range=(0, 65535),
        description="the agent's TCP port; 0: a free port for an agent on this machine "
        "(the node starts it), 7070 for a remote one",
    )
    agent_token: str = param(
        default="",
        max_length=255,
        description="the agent's token (its data dir's agent.token); read locally when empty",
    )


class AddSimulatorHost(ApiMessage):
    """Add a simulated host: the agent contract without libvirt, for tests and demo labs."""

    tag_resource_type: ClassVar[str] = "HostVO"
    name: str = param(required=True, max_length=255, non_empty=True)
    description: str = param(max_length=2048)
    cluster_uuid: str = param(required=True, resource_type="ClusterVO")
    cpu_num: int = param(default=8, number_range=(1, 1024))
    memory_size: int = param(
        default=32 * GiB, number_range=(GiB // 4, 1024 * 1024 * GiB), description="bytes"
    )


class ReconnectHost(ApiMessage):
    """Connect to a host's agent again: refresh its facts, capacity and VM states."""

    timeout = 600.0
    uuid: str = param(required=True, resource_type="HostVO")

    def sync_signature(self) -> str:
        return f"Host-{self.uuid}"


class DeleteHost(ApiMessage):
    """Delete a host that runs no VM."""

    uuid: str = param(required=True, resource_type="HostVO")

    def sync_signature(self) -> str:
        return f"Host-{self.uuid}"


class QueryHost(QueryMessage):
    """Query hosts, with their status and capacity."""

    model = HostVO
