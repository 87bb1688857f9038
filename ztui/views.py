"""The views the ``:`` command bar switches between, with their aliases and keys."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from textual.binding import Binding
from textual.screen import Screen

DEFAULT_MODE = "_default"
"""Textual's name for the first mode: ztui's dashboard."""


@dataclass(frozen=True)
class View:
    name: str
    title: str
    aliases: tuple[str, ...]
    key: str
    """The key that opens it from anywhere (binding ``ztui.view.<name>``)."""
    screen_path: str
    """``module:Class`` of its screen (imported when first shown: the screens import
    ``ztui.context``, which imports this module)."""

    @property
    def mode(self) -> str:
        return DEFAULT_MODE if self.name == "dashboard" else self.name

    @property
    def words(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)

    @property
    def screen_type(self) -> type[Screen[Any]]:
        module, _, cls = self.screen_path.partition(":")
        found = getattr(importlib.import_module(module), cls)
        assert isinstance(found, type) and issubclass(found, Screen)
        return found

    def screen(self) -> Screen[Any]:
        return self.screen_type()

    @property
    def binding(self) -> Binding:
        return Binding(
            self.key, f"view('{self.name}')", self.title, show=False, id=f"ztui.view.{self.name}"
        )


VIEWS: tuple[View, ...] = (
    View("dashboard", "Dashboard", ("dash", "home"), "1", "ztui.screens.dashboard:DashboardScreen"),
    View("vms", "VMs", ("vm", "vmi", "instances"), "2", "ztui.screens.vms:VmsScreen"),
    View("images", "Images", ("image", "img"), "3", "ztui.screens.images:ImagesScreen"),
    View(
        "networks",
        "Networks",
        ("net", "network", "l3", "l2", "vr"),
        "4",
        "ztui.screens.networks:NetworksScreen",
    ),
    View("hosts", "Hosts", ("host", "hv"), "5", "ztui.screens.hosts:HostsScreen"),
    View(
        "config",
        "Global config",
        ("cfg", "settings"),
        "6",
        "ztui.screens.global_config:GlobalConfigScreen",
    ),
    View(
        "ops",
        "Operations",
        ("operations", "op", "log", "history"),
        "7",
        "ztui.screens.operations:OperationsScreen",
    ),
    View("gc", "GC jobs", ("garbage", "gcjob", "cleanup"), "8", "ztui.screens.gc:GcScreen"),
    View(
        "volumes",
        "Volumes",
        ("volume", "vol", "vols"),
        "9",
        "ztui.screens.volumes:VolumesScreen",
    ),
    View("help", "Help", ("h", "keys", "?"), "question_mark", "ztui.screens.help:HelpScreen"),
)
"""Every view, in the order of their keys."""


def find_view(word: str) -> View | None:
    """The view named ``word`` or one of its aliases; else the only one it starts."""
    word = word.strip().lower()
    exact = [v for v in VIEWS if word in v.words]
    if exact:
        return exact[0]
    prefixed = [v for v in VIEWS if any(w.startswith(word) for w in v.words)]
    return prefixed[0] if word and len(prefixed) == 1 else None
