"""The management node's side: user data and SSH keys of VMs (system tags, as ZStack keeps
them), the ``userData`` parameter of CreateVmInstance, the SMBIOS seed that points
cloud-init at the metadata service, and the entries the virtual router serves.

``Userdata`` is a service type this plugin adds to the ``VirtualRouter`` provider.  A VM
with a NIC on a network that gets it starts with the SMBIOS serial
``ds=nocloud-net;s=http://169.254.169.254/nocloud/``; its NIC's entry is added to the
router's metadata server before the domain starts and removed when the VM stops or goes
(after and before the router's own DHCP entry: this plugin's order is below the
router's), each change under the router's own lock.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy.orm import Session

from contracts import kvm
from core.config.spi import GlobalConfigDef, GlobalConfigProvider, global_config_value
from core.kernel.api import ApiMessage
from core.kernel.api_params import ApiParameterExtensionPoint, contributed_param
from core.kernel.chains import FlowChainContributor, FlowInsertion
from core.kernel.extensions import Plugin
from core.kernel.service import GlobalApiInterceptor
from core.kvm.extension_points import KVMStartVmExtensionPoint
from core.network.service.extension_points import NetworkServiceTypeExtensionPoint
from core.tag.spi import SystemTagDef, SystemTagProvider
from core.virtual_router.extension_points import (
    GUEST,
    POST_CREATE_CHAIN,
    SYNC_SNAT_FLOW,
    VIRTUAL_ROUTER,
    VirtualRouterAccess,
)
from core.vm.extension_points import PreVmInstantiateResourceExtensionPoint, VmInstanceSpec
from zsl_userdata import router
from zsl_userdata.contract import SEED, SERVICE_TYPE, ReleaseUserdataCmd, UserdataEntryTO
from zsl_userdata.entries import entries_of_vm, served
from zsl_userdata.flows import SYNC_FLOW
from zsl_userdata.tags import (
    CREATE_VM,
    MAX_SIZE,
    SSHKEY,
    USERDATA,
    USERDATA_PREFIX,
    check_tags,
    decode_user_data,
)

NicsByL3 = dict[str, list[dict[str, Any]]]


class UserdataPlugin(
    Plugin,
    NetworkServiceTypeExtensionPoint,
    SystemTagProvider,
    GlobalConfigProvider,
    ApiParameterExtensionPoint,
    GlobalApiInterceptor,
    KVMStartVmExtensionPoint,
    PreVmInstantiateResourceExtensionPoint,
    FlowChainContributor,
):
    implements = (
        NetworkServiceTypeExtensionPoint,
        SystemTagProvider,
        GlobalConfigProvider,
        ApiParameterExtensionPoint,
        GlobalApiInterceptor,
        KVMStartVmExtensionPoint,
        PreVmInstantiateResourceExtensionPoint,
        FlowChainContributor,
    )
    order = -100
    """Below the virtual router's: its router exists before an entry is added, and the
    entry goes before the router may."""
    provider_type = VIRTUAL_ROUTER
    service_types = (SERVICE_TYPE,)
    api_name = CREATE_VM
    api_params = {
        "userData": contributed_param(
            "userData",
            str,
            description="base64 of the VM's user data (a #cloud-config, or a script "
            "starting with #!), kept as the system tag userdata::<base64>",
        )
    }

    # -- definitions -------------------------------------------------------------------
    def system_tags(self) -> list[SystemTagDef]:
        return [USERDATA, SSHKEY]

    def global_configs(self) -> list[GlobalConfigDef]:
        return [MAX_SIZE]

    def flow_insertions(self) -> list[FlowInsertion]:
        return [FlowInsertion(POST_CREATE_CHAIN, SYNC_FLOW, after=SYNC_SNAT_FLOW)]

    def _max_size(self) -> int:
        return int(global_config_value(self.node, MAX_SIZE))

    # -- the userData parameter, and the tags CreateVmInstance carries -----------------
    def to_system_tags(self, values: dict[str, Any]) -> list[str]:
        text = "".join(str(values["userData"]).split())  # base64 may come wrapped
        if not text:
            return []
        decode_user_data(text, self._max_size())
        return [USERDATA_PREFIX + text]

    def applies_to(self, msg: ApiMessage) -> bool:
        return msg.api_name == CREATE_VM and bool(msg.system_tags)

    async def intercept(self, msg: ApiMessage) -> ApiMessage:
        check_tags(msg.system_tags, self._max_size())
        return msg

    # -- seeding cloud-init ------------------------------------------------------------
    async def _served_nics(self, nics: list[dict[str, Any]]) -> NicsByL3:
        """The NICs on networks the virtual router serves user data on, by network."""
        by_l3: NicsByL3 = {}
        for nic in nics:
            by_l3.setdefault(nic["l3NetworkUuid"], []).append(nic)
        if not by_l3:
            return {}

        def read(session: Session) -> NicsByL3:
            return {l3: found for l3, found in by_l3.items() if served(session, l3)}

        result: NicsByL3 = await self.node.db.run(read)
        return result

    async def before_start_vm(self, spec: VmInstanceSpec, cmd: kvm.StartVmCmd) -> kvm.StartVmCmd:
        if await self._served_nics(spec.nics):
            return cmd.model_copy(update={"smbios_serial": SEED})
        return cmd

    # -- the router's entries ----------------------------------------------------------
    async def pre_before_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None:
        return None

    async def pre_instantiate_vm_resource(self, spec: VmInstanceSpec) -> None:
        access = router.access_of(self.node)
        for l3, nics in (await self._served_nics(spec.nics)).items():
            async with access.locked(l3):
                found = await self.node.db.run(
                    partial(_router_and_entries, access, l3, spec.vm_uuid, spec.name, nics)
                )
                if found is not None:
                    appliance, guest_mac, entries = found
                    await router.apply(access.client(appliance), guest_mac, entries)

    async def pre_release_vm_resource(self, spec: VmInstanceSpec) -> None:
        access = router.access_of(self.node)
        for l3, nics in (await self._served_nics(spec.nics)).items():
            ips = [nic["ip"] for nic in nics if nic.get("ip")]
            async with access.locked(l3):
                appliance = await self.node.db.run(partial(access.appliance_of, guest_l3_uuid=l3))
                if appliance is not None and ips:
                    await access.client(appliance).send(ReleaseUserdataCmd(ips=ips))


def _router_and_entries(
    access: VirtualRouterAccess,
    l3: str,
    vm_uuid: str,
    vm_name: str,
    nics: list[dict[str, Any]],
    session: Session,
) -> tuple[dict[str, Any], str, list[UserdataEntryTO]] | None:
    """The router of ``l3`` (None if it has none), its guest MAC, and the VM's entries."""
    appliance = access.appliance_of(session, l3)
    if appliance is None:
        return None
    guest_mac = access.router_nics(session, appliance["uuid"])[GUEST]["mac"]
    return appliance, guest_mac, entries_of_vm(session, vm_uuid, vm_name, nics)
