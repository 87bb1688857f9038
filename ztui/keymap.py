"""The user's keymap: binding ids to keys, from ``[ztui.keymap]`` in config.toml.

Every binding of ztui has an id (``ztui.vm.stop``…); the help screen lists
them.  Example::

    [ztui.keymap]
    "ztui.vm.stop" = "S"
    "ztui.view.vms" = "f2,v"
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from textual.binding import Binding, BindingType

from core.kernel.properties import Properties, define

KEYMAP_PROPERTY = "ztui.keymap"
define(KEYMAP_PROPERTY, dict, {}, "ztui key bindings by binding id, e.g. ztui.vm.stop = 'S'")


def binding_ids(bindings: Iterable[BindingType]) -> set[str]:
    return {b.id for b in bindings if isinstance(b, Binding) and b.id}


def load_keymap(props: Properties, known_ids: set[str]) -> tuple[dict[str, str], list[str]]:
    """The keymap to apply, and one line per entry that was ignored (and why)."""
    raw: Mapping[str, Any] = props.get(KEYMAP_PROPERTY) or {}
    keymap: dict[str, str] = {}
    problems: list[str] = []
    for binding_id, keys in raw.items():
        if binding_id not in known_ids:
            problems.append(f"[ztui.keymap] {binding_id}: no binding has this id (see the help)")
        elif not isinstance(keys, str) or not keys.strip():
            problems.append(f"[ztui.keymap] {binding_id}: keys must be a non-empty string")
        else:
            keymap[binding_id] = keys
    return keymap, problems
