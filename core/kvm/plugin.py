"""The KVM hypervisor area: its global configs, system tags and reserved capacity.
The host agent and VM life cycle over libvirt are driven through the host service."""

from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.config.plugin import GlobalConfigPlugin
from core.host.extension_points import HostReservedCapacityExtensionPoint, ReservedHostCapacity
from core.kernel.extensions import Plugin
from core.kvm import global_config, system_tags
from core.tag.definitions import SystemTagDef, SystemTagProvider
from core.vm.spec import human_size


class KvmPlugin(
    Plugin, GlobalConfigProvider, SystemTagProvider, HostReservedCapacityExtensionPoint
):
    implements = (GlobalConfigProvider, SystemTagProvider, HostReservedCapacityExtensionPoint)

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    def system_tags(self) -> list[SystemTagDef]:
        return list(system_tags.ALL)

    def reserved_host_capacity(self, hypervisor_type: str) -> ReservedHostCapacity:
        """kvm.reservedMemory on every KVM host (ZStack's KvmHostReserveExtension)."""
        if hypervisor_type != "KVM":
            return ReservedHostCapacity()
        configs = self.node.plugin(GlobalConfigPlugin)
        memory = int(configs.value(global_config.CATEGORY, global_config.RESERVED_MEMORY.name))
        held_by = (f"{global_config.RESERVED_MEMORY.identity}={human_size(memory)}",)
        return ReservedHostCapacity(memory=memory, held_by=held_by if memory else ())

    def reserved_capacity_configs(self) -> list[GlobalConfigDef]:
        return [global_config.RESERVED_MEMORY]
