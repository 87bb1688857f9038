"""The VM verbs that let a guest be reached from outside its private network, shared by
the VMs view and the VM detail view: port forward (one dialog) and EIP attach/detach.

Both act on the VM's first NIC on a network that gets the service (``PortForwarding``,
``Eip``) from its virtual router, through the node's API only.  A VIP comes from the
public network of the router serving that network (or of the offering a router would
be made from); a VIP made for a rule or an EIP that is then refused is deleted again,
so a failure leaves nothing behind.  A node without these APIs (their plugin is not
installed) says so, instead of failing on them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.binding import Binding

from ztui.addressing import SERVICE_REFS, Services
from ztui.dialogs.confirm import ConfirmDialog
from ztui.dialogs.port_forward import ForwardRequest, PortForwardDialog
from ztui.reach import EIP, PORT_FORWARDING, first_nic, public_network_of, rule_reach

if TYPE_CHECKING:
    from ztui.screens.base import ZtuiScreen

Row = Mapping[str, Any]
NO_PLUGIN = (
    "This node has no {what}: its APIs come with the VIP plugin (zsl_vip), which is not "
    "installed or not enabled."
)


def reach_bindings(area: str) -> list[Binding]:
    """The bindings for one place, ids ``<area>.port-forward`` and ``<area>.eip``."""
    return [
        Binding("f", "port_forward", "Port forward", id=f"{area}.port-forward", show=False),
        Binding("e", "eip", "EIP on/off", id=f"{area}.eip", show=False),
    ]


@dataclass(frozen=True)
class Target:
    """The NIC a verb acts on, and where a new VIP for it would come from."""

    vm: Row
    nic: Row
    l3: Row
    public_uuid: str | None
    public_name: str

    @property
    def vm_name(self) -> str:
        return str(self.vm.get("name"))

    def no_public(self) -> str:
        return (
            f"no public network for a VIP: L3 network {self.l3.get('name')} has no virtual "
            "router and its zone no virtual router offering"
        )


async def find_target(screen: ZtuiScreen, vm: Row, service: str) -> Target | None:
    """The VM's first NIC on a network that gets ``service``; None (said) when it has
    none."""
    nics, refs, l3s, routers, offerings = await asyncio.gather(
        screen.api_query("QueryVmNic", {"conditions": [f"vmInstanceUuid={vm['uuid']}"]}),
        screen.api_query(SERVICE_REFS),
        screen.api_query("QueryL3Network"),
        screen.api_query("QueryVirtualRouterVm"),
        screen.api_query("QueryVirtualRouterOffering"),
    )
    nic = first_nic(nics, Services.of(refs), service)
    if nic is None:
        screen.notify(
            f"VM {vm['name']} has no NIC with an address on a network that gets {service} "
            "from its virtual router (:net shows each L3 network's services).",
            severity="warning",
        )
        return None
    l3 = next((n for n in l3s if n["uuid"] == nic["l3NetworkUuid"]), {"uuid": nic["l3NetworkUuid"]})
    public = public_network_of(l3, routers, offerings)
    public_name = next((str(n["name"]) for n in l3s if n["uuid"] == public), "")
    return Target(vm, nic, l3, public, public_name)


async def with_new_vip(
    screen: ZtuiScreen,
    target: Target,
    name: str,
    use: Callable[[Row], Awaitable[Any]],
    what: str,
) -> Any:
    """Make a VIP on the target's public network and ``use`` it for ``what`` (``Port
    forward``, ``EIP``); a VIP whose use failed (None) is deleted again.  What ``use``
    gave, or None (the failure is shown)."""
    if target.public_uuid is None:
        screen.status.show_error(f"{target.vm_name}: {target.no_public()}")
        screen.notify(target.no_public(), title=what, severity="error")
        return None
    vip = await screen.api_call("CreateVip", {"name": name, "l3NetworkUuid": target.public_uuid})
    if vip is None:
        return None
    used = await use(vip)
    if used is None:  # its refusal is shown; the VIP made for it goes
        reply = await screen.session.call("DeleteVip", {"uuid": vip["uuid"]})
        if not reply.success:
            screen.show_failure(f"DeleteVip {vip['ip']}", reply)
    return used


# -- port forward ------------------------------------------------------------------------


def port_forward(screen: ZtuiScreen, vm: Row | None) -> None:
    """Ask for the ports, then forward them to the VM (binding ``*.port-forward``)."""
    if vm is None:
        screen.notify("No VM selected.", severity="warning")
        return
    screen.run_worker(_ask_forward(screen, vm), group="verbs", exit_on_error=False)


async def _ask_forward(screen: ZtuiScreen, vm: Row) -> None:
    if await screen.plugin_query("QueryPortForwardingRule", {"limit": 1}) is None:
        screen.notify(NO_PLUGIN.format(what="port forwarding"), severity="warning")
        return
    target = await find_target(screen, vm, PORT_FORWARDING)
    if target is None:
        return
    rules = await screen.api_query(
        "QueryPortForwardingRule", {"conditions": [f"vmNicUuid={target.nic['uuid']}"]}
    )
    vip = rules[0] if rules else None  # all rules of a NIC share one VIP
    where = f"To {target.nic['ip']} on {target.l3.get('name')}, "
    if vip is not None:
        where += f"from VIP {vip['vipIp']} (that of its other rules)."
    elif target.public_uuid is not None:
        where += f"from a new VIP on {target.public_name or 'the public network'}."
    else:
        where += f"but {target.no_public()}."

    def answered(request: ForwardRequest | None) -> None:
        if request is not None:
            screen.run_worker(
                forward(screen, target, request, vip), group="verbs", exit_on_error=False
            )

    screen.app.push_screen(PortForwardDialog(target.vm_name, where), answered)


async def forward(
    screen: ZtuiScreen, target: Target, request: ForwardRequest, shared: Row | None
) -> Row | None:
    """Create the rule (on ``shared``, the VIP of the NIC's other rules, else on a new
    VIP) and say how to reach it; the rule, or None (the failure is shown)."""
    name = f"{target.vm_name}-{request.protocol.lower()}-{request.vip_port}"
    screen.status.show_info(
        f"forwarding {request.protocol} port {request.vip_port} to {target.vm_name}:"
        f"{request.guest_port}…"
    )

    async def create(vip_uuid: str) -> Any:
        return await screen.api_call(
            "CreatePortForwardingRule",
            {
                "name": name,
                "vipUuid": vip_uuid,
                "vipPortStart": request.vip_port,
                "privatePortStart": request.guest_port,
                "protocolType": request.protocol,
                "vmNicUuid": target.nic["uuid"],
            },
        )

    if shared is not None:
        rule = await create(str(shared["vipUuid"]))
    else:
        rule = await with_new_vip(
            screen,
            target,
            f"{target.vm_name}-pf",
            lambda vip: create(str(vip["uuid"])),
            "Port forward",
        )
    if rule is None:
        return None
    text = (
        f"{target.vm_name}: {request.protocol} {rule['vipIp']}:{request.vip_port} → "
        f"{rule.get('guestIp') or target.nic['ip']}:{request.guest_port} · "
        f"reach it: {rule_reach(rule)}"
    )
    screen.status.show_info(text)
    screen.notify(text, title="Port forward")
    return dict(rule)


# -- EIP ---------------------------------------------------------------------------------


def toggle_eip(screen: ZtuiScreen, vm: Row | None) -> None:
    """Detach and delete the VM's EIP (after a confirmation), or give it one
    (binding ``*.eip``)."""
    if vm is None:
        screen.notify("No VM selected.", severity="warning")
        return
    screen.run_worker(_toggle_eip(screen, vm), group="verbs", exit_on_error=False)


async def _toggle_eip(screen: ZtuiScreen, vm: Row) -> None:
    eips = await screen.plugin_query("QueryEip")
    if eips is None:
        screen.notify(NO_PLUGIN.format(what="EIPs"), severity="warning")
        return
    nics = await screen.api_query("QueryVmNic", {"conditions": [f"vmInstanceUuid={vm['uuid']}"]})
    nic_uuids = {n["uuid"] for n in nics}
    eip = next((e for e in eips if e.get("vmNicUuid") in nic_uuids), None)
    if eip is None:
        target = await find_target(screen, vm, EIP)
        if target is not None:
            await attach_eip(screen, target)
        return
    question = (
        f"Detach EIP {eip['vipIp']} from VM {vm['name']}?\n"
        "The EIP and its VIP are deleted: the guest goes out through its router's SNAT "
        "again, and is no longer reached at that address."
    )

    def answered(yes: bool | None) -> None:
        if yes:
            screen.run_worker(detach_eip(screen, vm, eip), group="verbs", exit_on_error=False)

    screen.app.push_screen(ConfirmDialog(question, "Detach"), answered)


async def attach_eip(screen: ZtuiScreen, target: Target) -> Row | None:
    """A new VIP as the NIC's EIP; the EIP, or None (the failure is shown)."""

    async def create(vip: Row) -> Any:
        return await screen.api_call(
            "CreateEip",
            {
                "name": f"{target.vm_name}-eip",
                "vipUuid": vip["uuid"],
                "vmNicUuid": target.nic["uuid"],
            },
        )

    screen.status.show_info(f"giving {target.vm_name} an EIP…")
    eip = await with_new_vip(screen, target, f"{target.vm_name}-eip", create, "EIP")
    if eip is None:
        return None
    text = f"{target.vm_name}: EIP {eip['vipIp']} attached · reach it at {eip['vipIp']}"
    screen.status.show_info(text)
    screen.notify(text, title="EIP")
    return dict(eip)


async def detach_eip(screen: ZtuiScreen, vm: Row, eip: Row) -> bool:
    """Detach the EIP, then delete it and its VIP; whether all went (a failure is
    shown, and what follows it is not tried)."""
    ip = str(eip["vipIp"])
    screen.status.show_info(f"detaching EIP {ip} from {vm['name']}…")
    done = (
        await screen.api_ok("DetachEip", {"uuid": eip["uuid"]}, ip)
        and await screen.api_ok("DeleteEip", {"uuid": eip["uuid"]}, ip)
        and await screen.api_ok("DeleteVip", {"uuid": eip["vipUuid"]}, ip)
    )
    if done:
        text = f"{vm['name']}: EIP {ip} detached and deleted, with its VIP"
        screen.status.show_info(text)
        screen.notify(text, title="EIP")
    return done
