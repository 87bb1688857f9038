"""The KVM hypervisor area.  So far it defines its global configs and system tags;
the host agent and VM life cycle come with the compute work."""

from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.kernel.extensions import Plugin
from core.kvm import global_config, system_tags
from core.tag.definitions import SystemTagDef, SystemTagProvider


class KvmPlugin(Plugin, GlobalConfigProvider, SystemTagProvider):
    implements = (GlobalConfigProvider, SystemTagProvider)

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)

    def system_tags(self) -> list[SystemTagDef]:
        return list(system_tags.ALL)
