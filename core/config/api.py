from __future__ import annotations

from core.config.models import GlobalConfigVO
from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage

GLOBAL_CONFIG_QUEUE = "GlobalConfig"
"""Changes to global configs run one at a time: they are rare, and a reset touches many."""


class UpdateGlobalConfig(ApiMessage):
    """Change a global config; the value must pass the config's rules."""

    category: str = param(required=True, max_length=64)
    name: str = param(required=True, max_length=255)
    value: str = param(required=True, max_length=2048)

    def sync_signature(self) -> str:
        return GLOBAL_CONFIG_QUEUE


class ResetGlobalConfig(ApiMessage):
    """Set every global config (or one category) back to its default."""

    category: str = param(max_length=64, description="only this category")

    def sync_signature(self) -> str:
        return GLOBAL_CONFIG_QUEUE


class GetGlobalConfigOptions(ApiMessage):
    """The type, default and rules of one global config."""

    read_only = True
    category: str = param(required=True, max_length=64)
    name: str = param(required=True, max_length=255)


class QueryGlobalConfig(QueryMessage):
    """Query global configs, e.g. category=kvm name=vm.migrationQuantity."""

    model = GlobalConfigVO
