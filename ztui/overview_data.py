"""What the overview screen shows, fetched from the node in one go."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from ztui.session import NodeSession

Inventory = dict[str, Any]


@dataclass(frozen=True)
class QueryResult:
    """The inventories of one query, or why the query failed."""

    api: str
    inventories: list[Inventory] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Overview:
    node: QueryResult
    zones: QueryResult
    hosts: QueryResult
    global_configs: QueryResult

    @property
    def errors(self) -> list[str]:
        """One line per failed query: ``<Api>: <code>: <description>``."""
        results = (self.node, self.zones, self.hosts, self.global_configs)
        return [f"{r.api}: {r.error}" for r in results if r.error is not None]


async def query(
    session: NodeSession, api: str, params: dict[str, Any] | None = None
) -> QueryResult:
    """Run one Query* API; a failure is kept in the result, never raised."""
    reply = await session.call(api, params)
    if not reply.success:
        return QueryResult(api, error=str(reply.error) if reply.error else "failed")
    return QueryResult(api, list(reply.inventories or []))


def _by_category_and_name(result: QueryResult) -> QueryResult:
    rows = sorted(result.inventories, key=lambda c: (str(c.get("category")), str(c.get("name"))))
    return QueryResult(result.api, rows, result.error)


async def fetch_overview(session: NodeSession) -> Overview:
    """The node record, zones and hosts (oldest first) and every global config (sorted)."""
    node, zones, hosts, configs = await asyncio.gather(
        query(session, "QueryManagementNode"),
        query(session, "QueryZone", {"sortBy": "createDate"}),
        query(session, "QueryHost", {"sortBy": "createDate"}),
        query(session, "QueryGlobalConfig"),
    )
    return Overview(node, zones, hosts, _by_category_and_name(configs))
