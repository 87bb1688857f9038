"""Telling a router's metadata server what to serve: a full sync (post-create, so a new or
restarted agent gets everything), or a VM's entries added and removed as its NICs come and
go.  Bodies stay well under the agent's limit: a sync too big for one command is a sync of
the first part and applies of the rest."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from core.kernel.rest import AgentClient
from core.virtual_router.extension_points import VirtualRouterAccess
from core.virtual_router.spi import router_access
from zsl_userdata.contract import ApplyUserdataCmd, SyncUserdataCmd, UserdataEntryTO

BATCH_BYTES = 4 << 20
"""About how much user data (base64) one command carries at most."""


def access_of(node: Any) -> VirtualRouterAccess:
    return router_access(node, "user data")


def batches(entries: list[UserdataEntryTO]) -> Iterator[list[UserdataEntryTO]]:
    """``entries`` in order, cut where a part would carry more than BATCH_BYTES."""
    part: list[UserdataEntryTO] = []
    size = 0
    for e in entries:
        weight = len(e.user_data) + sum(len(k) for k in e.ssh_keys) + 256
        if part and size + weight > BATCH_BYTES:
            yield part
            part, size = [], 0
        part.append(e)
        size += weight
    yield part


async def sync(client: AgentClient, guest_mac: str, entries: list[UserdataEntryTO]) -> None:
    """The router serves exactly ``entries``."""
    parts = batches(entries)
    await client.send(SyncUserdataCmd(guest_mac=guest_mac, entries=next(parts)))
    for part in parts:
        await client.send(ApplyUserdataCmd(guest_mac=guest_mac, entries=part))


async def apply(client: AgentClient, guest_mac: str, entries: list[UserdataEntryTO]) -> None:
    for part in batches(entries):
        if part:
            await client.send(ApplyUserdataCmd(guest_mac=guest_mac, entries=part))
