"""L2 Linux bridges (blocking; run in a thread).

A bridge is the project's when its name is a project bridge name (``zslbr-…``,
checked by agent.commands before anything gets here).  Creating one is
idempotent; a physical interface is enslaved only when the core names it, never
the one that carries the host's default route unless the core says so, and
never one another master holds.  Deleting a bridge releases (never deletes) the
interfaces the project did not make, then deletes the bridge.

A bridge says which lab made it in its ifalias (``zstack-lite lab=<lab id>``,
contracts.names.lab_alias); a bridge of the same name that another lab made is
refused, never taken over.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from pyroute2 import IPRoute

from agent.network import links
from agentkit.errors import AgentError
from contracts.names import is_ours, lab_alias, lab_of_alias

log = logging.getLogger(__name__)


def create_bridge(
    name: str, physical: str = "", allow_default_route: bool = False, lab: str = ""
) -> None:
    """``lab``: the identity of the lab making it (none: no ifalias is set)."""
    with IPRoute() as ipr:
        bridge = links.find(ipr, name)
        if bridge is not None and links.kind_of(bridge) != "bridge":
            raise AgentError(f"bridge name {name} is taken by {links.describe(bridge)}")
        owner = lab_of_alias(links.alias_of(bridge)) if bridge is not None else ""
        if bridge is not None and owner and owner != lab:
            raise AgentError(f"bridge {name} belongs to another lab on this host ({owner})")
        port = _check_physical(ipr, physical, bridge, allow_default_route) if physical else None
        created = False
        if bridge is None:
            ipr.link("add", ifname=name, kind="bridge")
            created = True
            bridge = links.find(ipr, name)
            if bridge is None:
                raise AgentError(f"bridge {name} vanished right after it was made")
            log.info("created bridge %s", name)
        try:
            if created or not _mac_pinned(name):  # an agent may have died before it did
                # Pin the bridge's MAC: otherwise it follows the lowest port MAC and the
                # gateway's address changes under the guests whenever a port comes or goes.
                ipr.link("set", index=bridge["index"], address=links.mac_of(bridge))
            if lab:
                links.set_alias(ipr, bridge, lab_alias(lab))
            ipr.link("set", index=bridge["index"], state="up")
            if port is not None:
                if links.master_of(port) != bridge["index"]:
                    ipr.link("set", index=port["index"], master=bridge["index"])
                    log.info("enslaved %s to bridge %s", physical, name)
                ipr.link("set", index=port["index"], state="up")
        except Exception as exc:
            if created:
                links.delete_link(ipr, bridge["index"])
            raise AgentError(f"cannot set up bridge {name}: {links.message(exc)}") from None


def _mac_pinned(name: str) -> bool:
    """Whether the link's MAC was set (NET_ADDR_SET) rather than random or inherited."""
    try:
        return Path(f"/sys/class/net/{name}/addr_assign_type").read_text().strip() == "3"
    except OSError:
        return False


def _check_physical(
    ipr: IPRoute, physical: str, bridge: links.Link | None, allow_default_route: bool
) -> links.Link:
    port = links.find(ipr, physical)
    if port is None:
        raise AgentError(f"physical interface {physical} does not exist on this host")
    if links.kind_of(port) == "bridge":
        raise AgentError(f"physical interface {physical} is itself a bridge; it cannot be a port")
    if port["index"] in links.default_route_ifindexes(ipr) and not allow_default_route:
        raise AgentError(
            f"{physical} carries the host's default route; pass allowDefaultRouteInterface "
            "to enslave it"
        )
    master = links.master_of(port)
    if master and (bridge is None or master != bridge["index"]):
        raise AgentError(
            f"physical interface {physical} is already enslaved to {links.index_name(ipr, master)}"
        )
    return port


def delete_bridge(name: str) -> None:
    with IPRoute() as ipr:
        bridge = links.find(ipr, name)
        if bridge is None:
            return
        if links.kind_of(bridge) != "bridge":
            raise AgentError(f"{name} is {links.describe(bridge)}, not a bridge; not deleting it")
        for port in links.ports(ipr, bridge["index"]):
            if not is_ours(links.name_of(port)):
                ipr.link("set", index=port["index"], master=0)
                log.info("released %s from bridge %s", links.name_of(port), name)
        links.delete_link(ipr, bridge["index"])
        log.info("deleted bridge %s", name)


def missing_bridges(names: Sequence[str]) -> list[str]:
    with IPRoute() as ipr:
        missing = []
        for name in names:
            link = links.find(ipr, name)
            if link is None or links.kind_of(link) != "bridge":
                missing.append(name)
        return missing


def bridge_index(ipr: IPRoute, name: str) -> int:
    """The index of bridge ``name``; raise if there is none."""
    link = links.find(ipr, name)
    if link is None:
        raise AgentError(f"bridge {name} does not exist on this host")
    if links.kind_of(link) != "bridge":
        raise AgentError(f"{name} is {links.describe(link)}, not a bridge")
    return int(link["index"])
