"""Every binding of ztui has an id (so a keymap can rebind it)."""

from __future__ import annotations

from textual.binding import Binding

from ztui.app import ZtuiApp
from ztui.screens.overview import OverviewScreen


def test_every_binding_has_an_id() -> None:
    bindings = [*ZtuiApp.BINDINGS, *OverviewScreen.BINDINGS]
    assert all(isinstance(b, Binding) and b.id for b in bindings)
    ids = {b.id: b.key for b in bindings if isinstance(b, Binding)}
    assert ids["ztui.refresh"] == "r"
    assert ids["ztui.quit"] == "q"
