"""The host area.  So far it defines its global configs; zones, clusters and hosts'
life cycle come with the compute work."""

from core.config.definitions import GlobalConfigDef, GlobalConfigProvider
from core.host import global_config
from core.kernel.extensions import Plugin


class HostPlugin(Plugin, GlobalConfigProvider):
    implements = (GlobalConfigProvider,)

    def global_configs(self) -> list[GlobalConfigDef]:
        return list(global_config.ALL)
