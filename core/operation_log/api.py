from __future__ import annotations

from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage
from core.operation_log.models import OperationLogVO


class QueryOperationLog(QueryMessage):
    """Query finished operations (e.g. resourceUuid=<vm uuid>, sortBy=createDate)."""

    model = OperationLogVO


class GetRunningOperations(ApiMessage):
    """The operations under way, oldest first, as the journal has them now."""

    read_only = True
    resource_uuid: str = param(max_length=64, description="only those on this resource")
