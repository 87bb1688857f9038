"""What plugins may use of global configs: define them, hear of their changes, read them.

The definitions live where the config service uses them; this module is the published
name (``tests/test_layout.py`` lets plugins import ``*.spi``, not the service's modules)."""

from __future__ import annotations

from typing import Any

from core.config.definitions import (
    GlobalConfigBeforeUpdateExtensionPoint,
    GlobalConfigDef,
    GlobalConfigProvider,
    GlobalConfigUpdateExtensionPoint,
)

__all__ = [
    "GlobalConfigBeforeUpdateExtensionPoint",
    "GlobalConfigDef",
    "GlobalConfigProvider",
    "GlobalConfigUpdateExtensionPoint",
    "global_config_value",
]


def global_config_value(node: Any, definition: GlobalConfigDef) -> Any:
    """The current value of ``definition``, typed (int, float, bool, str, or bytes for
    sizes); ``node`` is the running management node."""
    from core.config.plugin import GlobalConfigPlugin

    return node.plugin(GlobalConfigPlugin).value(definition.category, definition.name)
