"""The extension registry: discovery, checks, order, and components' life cycle."""

from __future__ import annotations

import itertools
import os
import tomllib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Protocol

import pytest

from core.kernel.data_dir import NodeAlreadyRunning
from core.kernel.extensions import (
    ENTRY_POINT_GROUP,
    Component,
    ExtensionRegistry,
    Plugin,
    PluginError,
)
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties
from core.kernel.service import Service
from tests.conftest import core_plugins, load_props, make_node, write_config

# What pyproject.toml and the plugins' (plugins/*, installed beside the core) declare in
# the plugin group: discovery must find exactly these.
REPO = Path(__file__).parents[3]
INSTALLED = {
    name
    for project in [REPO / "pyproject.toml", *sorted(REPO.glob("plugins/*/pyproject.toml"))]
    for name in tomllib.loads(project.read_text())["project"]["entry-points"].get(
        ENTRY_POINT_GROUP, {}
    )
}


class Greeter(ABC):
    @abstractmethod
    def greet(self) -> str: ...

    @abstractmethod
    def wave(self) -> str: ...


class Sized(Protocol):
    def size(self) -> int: ...


def plugin(name: str, order: int, *ifaces: type) -> type[Plugin]:
    def greet(self: Any) -> str:
        return name

    return type(
        name,
        (Plugin,),
        {
            "implements": ifaces,
            "order": order,
            "greet": greet,
            "wave": greet,
        },
    )


# -- discovery -----------------------------------------------------------------------


def test_discover_all_installed_plugins() -> None:
    classes = ExtensionRegistry().discover(["*"], [])
    assert set(classes) == INSTALLED
    assert all(issubclass(c, Plugin) for c in classes.values())


def test_discover_only_enabled() -> None:
    assert set(ExtensionRegistry().discover(["zone", "tag"], [])) == {"zone", "tag"}


def test_disabled_plugins_are_skipped() -> None:
    classes = ExtensionRegistry().discover(["*"], ["vm", "host"])
    assert set(classes) == INSTALLED - {"vm", "host"}
    assert set(ExtensionRegistry().discover(["zone", "vm"], ["vm"])) == {"zone"}


def test_enabled_but_missing_plugin() -> None:
    with pytest.raises(PluginError) as info:
        ExtensionRegistry().discover(["zone", "noSuchPlugin"], [])
    text = str(info.value)
    assert "plugin noSuchPlugin is enabled in config.toml but no package provides it" in text
    assert "zstack_lite.plugins" in text
    assert f"installed: {', '.join(sorted(INSTALLED))}" in text


def test_disabled_but_not_installed_plugin() -> None:
    with pytest.raises(PluginError, match=r"plugin ghost is disabled in config\.toml but is not"):
        ExtensionRegistry().discover(["*"], ["ghost"])


async def test_node_with_missing_plugin_fails_and_releases_the_data_dir(tmp_path: Any) -> None:
    bad = load_props(write_config(tmp_path, '[plugins]\nenabled = ["zone", "nope"]\n'))
    with pytest.raises(PluginError, match="plugin nope is enabled"):
        await ManagementNode(bad).start()
    good = load_props(write_config(tmp_path))
    async with ManagementNode(good) as node:
        assert node.running


# -- checks ----------------------------------------------------------------------------


def test_declared_interface_must_be_implemented() -> None:
    class Lazy(Plugin):
        implements = (Component,)

    with pytest.raises(PluginError) as info:
        ExtensionRegistry().load({"lazy": Lazy}, None)  # type: ignore[arg-type]
    text = str(info.value)
    assert "plugin lazy" in text
    assert "declares Component but does not implement: start, stop" in text


def test_partly_implemented_interface_lists_only_whats_missing() -> None:
    class Half(Plugin, Greeter):
        implements = (Greeter,)

        def greet(self) -> str:
            return "hi"

    with pytest.raises(PluginError, match=r"declares Greeter but does not implement: wave$"):
        ExtensionRegistry().load({"half": Half}, None)  # type: ignore[arg-type]


def test_protocol_interface_members_are_checked() -> None:
    class NoSize(Plugin):
        implements = (Sized,)

    class HasSize(Plugin):
        implements = (Sized,)

        def size(self) -> int:
            return 1

    with pytest.raises(PluginError, match="does not implement: size"):
        ExtensionRegistry().load({"nosize": NoSize}, None)  # type: ignore[arg-type]
    registry = ExtensionRegistry()
    registry.load({"hassize": HasSize}, None)  # type: ignore[arg-type]
    assert [p.name for p in registry.extensions(Sized)] == ["hassize"]  # type: ignore[attr-defined]


def test_checks_happen_before_any_plugin_is_made() -> None:
    made: list[str] = []

    class Good(Plugin):
        def __init__(self, node: Any) -> None:
            super().__init__(node)
            made.append("good")

    class Bad(Plugin):
        implements = (Greeter,)

    with pytest.raises(PluginError):
        ExtensionRegistry().load({"a-good": Good, "z-bad": Bad}, None)  # type: ignore[arg-type]
    assert made == []


def test_not_a_plugin_and_not_an_interface() -> None:
    class NotPlugin:
        pass

    with pytest.raises(PluginError, match=r"is not a subclass of core\.kernel\.extensions\.Plugin"):
        ExtensionRegistry().load({"x": NotPlugin}, None)  # type: ignore[arg-type]

    class WeirdDecl(Plugin):
        implements = ("Service",)  # type: ignore[assignment]

    with pytest.raises(PluginError, match="declares 'Service', which is not an interface"):
        ExtensionRegistry().load({"w": WeirdDecl}, None)  # type: ignore[arg-type]


def test_plugin_whose_init_fails() -> None:
    class Fragile(Plugin):
        def __init__(self, node: Any) -> None:
            raise RuntimeError("no libvirt")

    with pytest.raises(
        PluginError,
        match=r"plugin fragile .* failed to initialise: "
        r"RuntimeError: no libvirt",
    ):
        ExtensionRegistry().load({"fragile": Fragile}, None)  # type: ignore[arg-type]


def test_two_plugins_with_one_name() -> None:
    registry = ExtensionRegistry()
    cls = plugin("A", 0, Greeter)
    registry.add("a", cls(None))  # type: ignore[arg-type]
    with pytest.raises(PluginError, match="two plugins are named a"):
        registry.add("a", cls(None))  # type: ignore[arg-type]


# -- order -----------------------------------------------------------------------------

SPECS = [("alpha", 5), ("beta", 5), ("gamma", 10), ("delta", -1), ("epsilon", 0)]
ORDERED = ["gamma", "alpha", "beta", "epsilon", "delta"]


@pytest.mark.parametrize("perm", list(itertools.permutations(range(len(SPECS))))[::7])
def test_order_higher_first_ties_by_name_whatever_the_load_order(perm: tuple[int, ...]) -> None:
    registry = ExtensionRegistry()
    for i in perm:
        name, order = SPECS[i]
        p = plugin(name.capitalize(), order, Greeter)(None)  # type: ignore[arg-type]
        registry.add(name, p)
    assert [p.name for p in registry.extensions(Greeter)] == ORDERED
    assert [p.greet() for p in registry.extensions(Greeter)] == [n.capitalize() for n in ORDERED]


def test_load_sets_names_and_indexes_by_interface() -> None:
    registry = ExtensionRegistry()
    classes = {name: plugin(name.capitalize(), order, Greeter) for name, order in SPECS}
    classes["other"] = plugin("Other", 100)
    registry.load(classes, None)  # type: ignore[arg-type]
    assert [p.name for p in registry.extensions(Greeter)] == ORDERED
    assert set(registry.plugins) == {*classes}
    assert registry.extensions(Component) == []
    assert registry.get(classes["gamma"]).name == "gamma"
    with pytest.raises(PluginError, match="no plugin of type Nope"):
        registry.get(plugin("Nope", 0))


def test_core_plugins_order(tmp_path: Path) -> None:
    node = ManagementNode(load_props(write_config(tmp_path)))  # loaded, never started
    node.registry.load(core_plugins(), node)
    core = [p for p in node.registry.plugins.values() if type(p).__module__.startswith("core.")]

    def of(interface: type) -> list[str]:  # plugins under plugins/ may add more
        return [p.name for p in node.registry.extensions(interface) if p in core]

    names = of(Component)
    assert names == [
        "globalConfig",
        "operationLog",
        "tag",
        "managementNode",
        "host",
        "networkService",
        "garbageCollector",
        "bootstrap",
        "image",
        "virtualRouter",
        "vm",
        "reconcile",
    ]
    services = of(Service)
    assert services == [
        "globalConfig",
        "operationLog",
        "tag",
        "managementNode",
        "host",
        "networkService",
        "garbageCollector",
        "cluster",
        "image",
        "instanceOffering",
        "l2Network",
        "l3Network",
        "storage",
        "virtualRouter",
        "vm",
        "volumeSnapshot",
        "zone",
        "reconcile",
    ]


# -- components in a node ---------------------------------------------------------------


class Journal:
    entries: ClassVar[list[str]] = []
    fail_start: ClassVar[set[str]] = set()
    fail_stop: ClassVar[set[str]] = set()


def component(name: str, order: int) -> type[Plugin]:
    """A component plugin class; its journal entries use ``name`` (the entry-point name)."""

    async def start(self: Any) -> None:
        assert self.node.db is not None and self.node.bus is not None
        if name in Journal.fail_start:
            raise RuntimeError(f"{name} cannot start")
        Journal.entries.append(f"start:{name}")

    async def stop(self: Any) -> None:
        Journal.entries.append(f"stop:{name}")
        if name in Journal.fail_stop:
            raise RuntimeError(f"{name} cannot stop")

    return type(
        name[0].upper() + name[1:],
        (Plugin, Component),
        {
            "implements": (Component,),
            "order": order,
            "start": start,
            "stop": stop,
        },
    )


@pytest.fixture
def journal() -> type[Journal]:
    Journal.entries = []
    Journal.fail_start = set()
    Journal.fail_stop = set()
    return Journal


def components() -> dict[str, type]:
    # globalConfig is 1000, operationLog and tag 900, managementNode 800: mine go around them
    return {
        "cFirst": component("cFirst", 2000),
        "cMid": component("cMid", 850),
        "cLastB": component("cLastB", -5),
        "cLastA": component("cLastA", -5),
    }


async def test_components_start_in_order_and_stop_in_reverse(
    props: Properties, journal: type[Journal]
) -> None:
    node = make_node(props, components())
    await node.start()
    assert journal.entries == ["start:cFirst", "start:cMid", "start:cLastA", "start:cLastB"]
    started = [type(c).__name__ for c in node._started]
    assert started == [
        "CFirst",
        "GlobalConfigPlugin",
        "OperationLogPlugin",
        "TagPlugin",
        "CMid",
        "ManagementNodePlugin",
        "HostPlugin",
        "NetworkServicePlugin",
        "GarbageCollectorPlugin",
        "BootstrapPlugin",
        "ImagePlugin",
        "VirtualRouterPlugin",
        "VmPlugin",
        "CLastA",
        "CLastB",
        "ReconcilePlugin",
    ]
    journal.entries.clear()
    await node.stop()
    assert journal.entries == ["stop:cLastB", "stop:cLastA", "stop:cMid", "stop:cFirst"]
    assert not node.running
    await node.stop()  # a second stop does nothing
    assert journal.entries == ["stop:cLastB", "stop:cLastA", "stop:cMid", "stop:cFirst"]


async def test_failing_component_stops_the_started_ones_and_releases_the_lock(
    props: Properties, journal: type[Journal]
) -> None:
    journal.fail_start = {"cLastA"}
    journal.fail_stop = {"cMid"}  # a failing stop does not stop the others from stopping
    node = make_node(props, components())
    with pytest.raises(RuntimeError, match="cLastA cannot start"):
        await node.start()
    assert journal.entries == [
        "start:cFirst",
        "start:cMid",
        "stop:cMid",
        "stop:cFirst",
    ]
    assert not node.running
    assert node._db is None
    assert node._started == []
    assert not node.socket_path.exists()
    assert (props.data_dir / "node.lock").read_text() == ""

    journal.fail_start = set()
    journal.entries.clear()
    second = make_node(props, components())
    await second.start()
    try:
        assert second.running
        assert journal.entries[0] == "start:cFirst"
    finally:
        await second.stop()


async def test_one_node_per_data_dir(props: Properties) -> None:
    async with ManagementNode(props) as first:
        assert (props.data_dir / "node.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(NodeAlreadyRunning) as info:
            await ManagementNode(props).start()
        assert info.value.pid == str(os.getpid())
        assert str(props.data_dir) in str(info.value)
        assert first.running
    async with ManagementNode(props) as again:
        assert again.running
