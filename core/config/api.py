from __future__ import annotations

from core.config.models import GlobalConfigVO
from core.kernel.api import ApiMessage, param
from core.kernel.query import QueryMessage


class UpdateGlobalConfig(ApiMessage):
    """Change a global config; the value must pass the config's rules."""

    category: str = param(required=True, max_length=64)
    name: str = param(required=True, max_length=255)
    value: str = param(required=True, max_length=2048)

    def sync_signature(self) -> str:
        return f"GlobalConfig-{self.category}.{self.name}"


class ResetGlobalConfig(ApiMessage):
    """Set every global config (or one category) back to its default."""

    category: str = param(max_length=64, description="only this category")


class GetGlobalConfigOptions(ApiMessage):
    """The type, default and rules of one global config."""

    read_only = True
    category: str = param(required=True, max_length=64)
    name: str = param(required=True, max_length=255)


class QueryGlobalConfig(QueryMessage):
    """Query global configs, e.g. category=kvm name=vm.migrationQuantity."""

    model = GlobalConfigVO
