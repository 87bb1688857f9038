"""The VM instance area.  So far it defines its global configs; the create and
life-cycle chains come with the compute work."""

from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.kernel.extensions import Plugin
from core.vm import global_config


class VmPlugin(Plugin, GlobalConfigProvider):
    implements = (GlobalConfigProvider,)

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)
