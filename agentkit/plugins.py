"""Agent plugins: each brings a set of commands (and streams) to an agent's server.

An agent is a thin main plus plugins.  Its plugins are the classes an entry-point group
names (``zstack_lite.agent_plugins`` for the KVM host agent,
``zstack_lite.vr_agent_plugins`` for the router agent), so an installed distribution adds
commands to an agent without a change to it.  Each is made with the agent's context (what
the agent shares with its plugins: the backend, locks, the router…), says whether it
applies to this agent (:meth:`AgentPlugin.applies`), and registers its paths; a path
registered twice fails the agent's start, naming it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import entry_points
from typing import ClassVar, Generic, TypeVar

from agentkit.server import AgentServer, CommandRegistry, SendCallback, StreamHandler

log = logging.getLogger(__name__)

C = TypeVar("C")


class AgentPlugin(Generic[C]):
    """A set of an agent's commands over the agent's context ``C``."""

    order: ClassVar[int] = 0
    """Plugins are registered, started and stopped by ``order`` (lower first), then name."""

    def __init__(self, ctx: C) -> None:
        self.ctx = ctx

    def applies(self) -> bool:
        """Whether this agent serves the plugin (e.g. only a simulator backend's)."""
        return True

    def commands(self, registry: CommandRegistry) -> None:
        """Register the plugin's command paths."""

    def streams(self) -> Mapping[str, StreamHandler]:
        """``GET`` routes handed the request (websockets); none by default."""
        return {}

    async def start(self) -> None:
        """Called once the agent's context is ready, before the server listens."""

    async def shutdown(self) -> None:
        """Called when the server shuts down, before its open connections are closed."""


def discover(group: str) -> list[type[AgentPlugin[object]]]:
    """The plugin classes an entry-point group names, by order then entry-point name."""
    found = []
    for ep in sorted(entry_points(group=group), key=lambda ep: ep.name):
        plugin = ep.load()
        if not (isinstance(plugin, type) and issubclass(plugin, AgentPlugin)):
            raise TypeError(f"entry point {ep.name} = {ep.value} in {group} is no AgentPlugin")
        found.append(plugin)
    return sorted(found, key=lambda p: p.order)


def load(classes: Iterable[type[AgentPlugin[C]]], ctx: C) -> list[AgentPlugin[C]]:
    """The plugins of ``classes`` that apply to this agent, made with its context."""
    plugins = [cls(ctx) for cls in sorted(classes, key=lambda p: p.order)]
    active = [p for p in plugins if p.applies()]
    log.info("agent plugins: %s", ", ".join(type(p).__name__ for p in active))
    return active


def register(plugins: Sequence[AgentPlugin[C]]) -> tuple[CommandRegistry, dict[str, StreamHandler]]:
    """Every plugin's commands in one registry, and their streams."""
    registry = CommandRegistry()
    streams: dict[str, StreamHandler] = {}
    for plugin in plugins:
        plugin.commands(registry)
        for path, handler in plugin.streams().items():
            if path in streams:
                raise ValueError(f"{path} is registered twice")
            streams[path] = handler
    return registry, streams


async def serve(
    classes: Iterable[type[AgentPlugin[C]]], ctx: C, token: str, send_callback: SendCallback
) -> tuple[list[AgentPlugin[C]], AgentServer]:
    """The plugins that apply, started, and a server (not yet listening) of their commands
    and streams that calls their :meth:`AgentPlugin.shutdown` when it stops."""
    plugins = load(classes, ctx)
    registry, streams = register(plugins)
    for plugin in plugins:
        await plugin.start()
    server = AgentServer(registry, token, send_callback, streams=streams)
    for plugin in plugins:
        server.on_shutdown(plugin.shutdown)
    return plugins, server
