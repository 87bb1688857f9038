from __future__ import annotations

from core.kernel.api import ApiMessage
from core.kernel.query import QueryMessage
from core.management_node.models import ManagementNodeVO


class QueryManagementNode(QueryMessage):
    """Query the management node record (its host, pid, state and versions as tags)."""

    model = ManagementNodeVO


class GetManagementNodeStatus(ApiMessage):
    """The running node: pid, uptime, version, data dir, socket, its hosts and their problems."""

    read_only = True
