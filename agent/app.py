"""The whole host agent put together: token, backend, reports, the plugins' commands
(entry-point group ``zstack_lite.agent_plugins``) and the HTTP server."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import aiohttp

from agent.backend import Backend
from agent.context import HostAgentContext
from agent.lab import default_lab_dir
from agent.reports import Reporter
from agentkit.auth import load_or_create_token
from agentkit.callback import CallbackSender, RetryPolicy
from agentkit.plugins import AgentPlugin, discover, serve
from agentkit.server import AgentServer
from contracts.kvm import AGENT_PORT, TOKEN_FILE
from contracts.names import lab_id

log = logging.getLogger(__name__)

PLUGIN_GROUP = "zstack_lite.agent_plugins"


class Agent:
    def __init__(
        self,
        backend: Backend,
        data_dir: Path,
        *,
        callback_policy: RetryPolicy | None = None,
        report_timeout: float = 10.0,
        lab: str | None = None,
        lab_dir: Path | None = None,
        plugins: Sequence[type[AgentPlugin[HostAgentContext]]] | None = None,
    ) -> None:
        """``lab_dir``: the data dir of the node (the lab) this agent serves, default: the
        one its data dir implies; ``lab``: the lab's identity
        (:func:`contracts.names.lab_id`), default: the lab dir's; ``plugins``: the plugin
        classes, default: the installed ones."""
        self.backend = backend
        self.data_dir = Path(data_dir)
        self.lab_dir = Path(lab_dir) if lab_dir is not None else default_lab_dir(self.data_dir)
        self.lab = lab or lab_id(self.lab_dir)
        self.token = load_or_create_token(self.data_dir / TOKEN_FILE)
        backend.set_data_dir(self.data_dir)
        backend.set_lab(self.lab)
        backend.set_lab_dir(self.lab_dir)
        self.plugin_classes = plugins if plugins is not None else discover(PLUGIN_GROUP)
        self.plugins: list[AgentPlugin[HostAgentContext]] = []
        self.callback_policy = callback_policy
        self.report_timeout = report_timeout
        self.reporter: Reporter | None = None
        self.server: AgentServer | None = None
        self._session: aiohttp.ClientSession | None = None

    @property
    def port(self) -> int:
        return self.server.port if self.server else 0

    async def start(self, host: str = "127.0.0.1", port: int = AGENT_PORT) -> int:
        """Start everything and listen; the port bound (``port`` 0 picks a free one)."""
        self._session = aiohttp.ClientSession()
        self.reporter = Reporter(self._session, self.token, self.report_timeout)
        self.reporter.start()
        self.backend.set_state_listener(self.reporter.vm_state)
        try:
            await self.backend.start()
            context = HostAgentContext(self.backend, self.reporter)
            sender = CallbackSender(self._session, self.token, self.callback_policy)
            self.plugins, self.server = await serve(
                self.plugin_classes, context, self.token, sender.send
            )
            return await self.server.start(host, port)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.backend.close()
        self.backend.set_state_listener(None)
        if self.reporter is not None:
            await self.reporter.close()
        if self._session is not None:
            await self._session.close()
            self._session = None
        log.info("agent stopped")
