"""The command palette's list of what the current view can do (its bindings)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider


class ViewActionsProvider(Provider):
    """Every action bound on the current view and the app, by its description."""

    def _actions(self) -> list[tuple[str, str, Callable[[], Awaitable[object]]]]:
        """``(title, help, run)`` of each enabled binding of the screen, without repeats."""
        seen: set[str] = set()
        found: list[tuple[str, str, Callable[[], Awaitable[object]]]] = []
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not active.enabled or not binding.description or binding.action in seen:
                continue
            seen.add(binding.action)
            keys = self.app.get_key_display(binding) or key
            run = partial(active.node.run_action, binding.action)
            found.append((binding.description, f"{keys} · {binding.id or ''}", run))
        return found

    async def discover(self) -> Hits:
        for title, help_text, run in self._actions():
            yield DiscoveryHit(title, run, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, run in self._actions():
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score,
                    matcher.highlight(title),
                    run,
                    help=help_text,
                )
