from __future__ import annotations

from core.kernel.query import QueryMessage
from core.management_node.models import ManagementNodeVO


class QueryManagementNode(QueryMessage):
    """Query the management node record (its host, pid, state and versions as tags)."""

    model = ManagementNodeVO
