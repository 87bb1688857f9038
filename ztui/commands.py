"""The command palette's list: what the current view can do first (its own verbs), then
the app's keys, then the app's commands (views by name, theme…).  Only ztui's bindings
are listed (those with an id): never a widget's internals, such as a table's cursor keys."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from textual.app import App
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.dom import DOMNode

Action = tuple[str, str, Callable[[], object]]
"""``(title, help, run)`` of one palette entry."""
NOT_LISTED = frozenset({"command_palette"})
"""Actions the palette leaves out (opening the palette from the palette)."""


def rank(node: DOMNode, binding: Binding) -> tuple[bool, int]:
    """Where a binding comes in the list: the screen's before the app's, and the bindings
    the view's own class declares before those of its bases (Refresh, Filter…)."""
    mro = type(node).__mro__
    declared = (  # by id: a keymap replaces the Binding object with one of other keys
        i
        for i, cls in enumerate(mro)
        if any(getattr(b, "id", None) == binding.id for b in cls.__dict__.get("BINDINGS", ()))
    )
    depth = next(declared, len(mro))
    return (isinstance(node, App), depth)


class ViewActionsProvider(Provider):
    """Every enabled binding of the current view, then of the app, then the app's system
    commands: one provider, so that order holds (providers answer in no fixed order)."""

    def _bindings(self) -> list[Action]:
        """The screen's enabled bindings, then the app's, each action once."""
        screen, app = self.screen, self.app
        actives = [a for a in screen.active_bindings.items() if a[1].node in (screen, app)]
        actives.sort(key=lambda item: rank(item[1].node, item[1].binding))
        seen: set[str] = set()
        found: list[Action] = []
        for key, active in actives:
            binding = active.binding
            if (
                not active.enabled
                or not binding.id
                or not binding.description
                or binding.action in NOT_LISTED
                or binding.action in seen
            ):
                continue
            seen.add(binding.action)
            keys = app.get_key_display(binding) or key
            run: Callable[[], Awaitable[object]] = partial(active.node.run_action, binding.action)
            found.append((binding.description, f"{keys} · {binding.id}", run))
        return found

    def _actions(self) -> list[Action]:
        bound = self._bindings()
        titles = {title for title, _help, _run in bound}
        system = [
            (command.title, command.help, command.callback)
            for command in self.app.get_system_commands(self.screen)
            if command.title not in titles  # Textual's Quit, when q is listed
        ]
        return bound + system

    async def discover(self) -> Hits:
        for title, help_text, run in self._actions():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._actions():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), run, help=help_text)
