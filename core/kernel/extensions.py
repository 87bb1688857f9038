"""The extension registry: plugins, the interfaces they implement, and their order.

A plugin is a class published in the entry-point group ``zstack_lite.plugins``
(see pyproject.toml).  It declares the extension points it implements in
``implements`` and an ``order`` (higher runs first; ties by plugin name, so the
order never depends on install order).  ``config.toml``'s ``[plugins]`` table
enables or disables plugins by entry-point name.

``registry.extensions(Interface)`` returns every plugin implementing that
interface, in order: the core asks it "who wants to take part here?" at each
extension point, as ZStack's ``getExtensionList`` does.

Start-up stops with :class:`PluginError` when an enabled plugin is missing or
cannot be loaded, or when a plugin declares an interface it does not implement.
"""

from __future__ import annotations

import inspect
import typing
from abc import ABC, abstractmethod
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from core.kernel.node import ManagementNode

ENTRY_POINT_GROUP = "zstack_lite.plugins"
T = TypeVar("T")


class PluginError(RuntimeError):
    """A plugin problem that stops the node from starting."""


class Plugin:
    """Base of plugin classes: made once per node, with the node passed in."""

    implements: ClassVar[tuple[type, ...]] = ()
    order: ClassVar[int] = 0
    name: str = ""
    """The entry-point name; set by the registry."""

    def __init__(self, node: ManagementNode) -> None:
        self.node = node


class Component(ABC):
    """An extension point: started when the node starts, stopped when it stops.

    Components start in registry order and stop in the reverse order.
    """

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...


class ReadinessCheck(ABC):
    """An extension point: work a component began at start that must settle before the node
    says it is ready (serves its socket, tells a service manager).  A host reconnecting is
    such work: a call that came before it settles would find no Connected host."""

    @abstractmethod
    async def settled(self, timeout: float) -> None:
        """Return once the work has settled, or ``timeout`` seconds have passed."""


class AfterRecoveryExtensionPoint(ABC):
    """An extension point: at start, once the chain runs a crash interrupted were taken up
    (:mod:`core.kernel.flow_recovery`) and before calls are served, a service makes the
    state of its resources consistent where no chain record could (a row made just before
    its chain's first record)."""

    @abstractmethod
    async def after_recovery(self) -> None: ...


def missing_members(cls: type, interface: type) -> list[str]:
    """The members of ``interface`` that ``cls`` does not implement."""
    required: set[str] = set(getattr(interface, "__abstractmethods__", ()))
    if getattr(interface, "_is_protocol", False):
        attrs = getattr(interface, "__protocol_attrs__", None)
        if attrs is None:  # Python 3.11 computes them on demand only
            attrs = typing._get_protocol_attrs(interface)  # type: ignore[attr-defined]
        required |= set(attrs)
    missing = []
    for member in sorted(required):
        impl = inspect.getattr_static(cls, member, None)
        if impl is None or getattr(impl, "__isabstractmethod__", False):
            missing.append(member)
    return missing


class ExtensionRegistry:
    def __init__(self) -> None:
        self._plugins: dict[str, Any] = {}
        self._by_interface: dict[type, list[Any]] = {}

    @property
    def plugins(self) -> dict[str, Any]:
        return dict(self._plugins)

    def discover(self, enabled: Iterable[str], disabled: Iterable[str]) -> dict[str, type]:
        """The plugin classes to load, by name, as config.toml's [plugins] table says."""
        found = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
        enabled, disabled = list(enabled), set(disabled)
        names = sorted(found) if "*" in enabled else list(enabled)
        classes: dict[str, type] = {}
        for name in names:
            if name in disabled:
                continue
            ep = found.get(name)
            if ep is None:
                raise PluginError(
                    f"plugin {name} is enabled in config.toml but no package provides it "
                    f"(no entry point {name!r} in group {ENTRY_POINT_GROUP}; "
                    f"installed: {', '.join(sorted(found)) or 'none'})"
                )
            try:
                classes[name] = ep.load()
            except Exception as exc:
                raise PluginError(
                    f"plugin {name} ({ep.value}) cannot be loaded: {type(exc).__name__}: {exc}"
                ) from exc
        for name in disabled - set(found):
            raise PluginError(f"plugin {name} is disabled in config.toml but is not installed")
        return classes

    def load(self, classes: dict[str, type], node: ManagementNode) -> None:
        """Check and instantiate every plugin class, then index them by interface."""
        for name, cls in sorted(classes.items()):
            self._check(name, cls)
        for name, cls in sorted(classes.items()):
            try:
                plugin = cls(node)
            except Exception as exc:
                raise PluginError(
                    f"plugin {name} ({cls.__module__}.{cls.__qualname__}) failed to "
                    f"initialise: {type(exc).__name__}: {exc}"
                ) from exc
            plugin.name = name
            self.add(name, plugin)

    def add(self, name: str, plugin: Any) -> None:
        """Register one plugin instance (ZStack's ``defineDynamicExtension``)."""
        if name in self._plugins:
            raise PluginError(f"two plugins are named {name}")
        self._check(name, type(plugin))
        plugin.name = name  # ties in extensions() are broken by this name
        self._plugins[name] = plugin
        for iface in type(plugin).implements:
            bucket = self._by_interface.setdefault(iface, [])
            bucket.append(plugin)
            bucket.sort(key=lambda p: (-type(p).order, p.name))

    def extensions(self, interface: type[T]) -> list[T]:
        """Every plugin implementing ``interface``: higher ``order`` first, then by name."""
        return list(self._by_interface.get(interface, ()))

    def get(self, cls: type[T]) -> T:
        """The one loaded plugin of class ``cls``."""
        for plugin in self._plugins.values():
            if isinstance(plugin, cls):
                return plugin
        raise PluginError(f"no plugin of type {cls.__qualname__} is loaded")

    @staticmethod
    def _check(name: str, cls: type) -> None:
        where = f"plugin {name} ({cls.__module__}.{cls.__qualname__})"
        if not isinstance(cls, type) or not issubclass(cls, Plugin):
            raise PluginError(f"{where} is not a subclass of core.kernel.extensions.Plugin")
        for iface in cls.implements:
            if not isinstance(iface, type):
                raise PluginError(f"{where} declares {iface!r}, which is not an interface")
            missing = missing_members(cls, iface)
            if missing:
                raise PluginError(
                    f"{where} declares {iface.__qualname__} but does not implement: "
                    + ", ".join(missing)
                )
