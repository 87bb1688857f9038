"""A test-only fault hook: an agent that kills itself at one command.

Off in production: it acts only when the environment variable :data:`FAULT_ENV` is set
when an agent's server is made (it is read once then).  Its value is
``<command path>:before`` or ``<command path>:after``, e.g. ``/vm/start:after``; the agent
serving that path (the KVM host agent or a virtual router's agent: both use
agentkit.server) sends itself SIGKILL right before running the command, or right after it
ran and before its answer leaves (the HTTP answer of a synchronous command, the callback
of an asynchronous one).  Child processes inherit the environment, so a virtual router's
agent started by a host agent carrying the variable has the same fault.  The system
tests (tests/system/test_agent_crash.py) use it to check that every command is safe to
send again after the agent died around it.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

log = logging.getLogger(__name__)

FAULT_ENV: Final = "ZSL_AGENT_FAULT"
WHEN: Final = ("before", "after")


@dataclass(frozen=True)
class Fault:
    path: str
    when: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Fault | None:
        """The fault the environment asks for; None when the variable is unset or empty.
        A malformed value is a ValueError (a test that sets it wants it to work)."""
        value = environ.get(FAULT_ENV, "")
        if not value:
            return None
        path, sep, when = value.rpartition(":")
        if not sep or not path.startswith("/") or when not in WHEN:
            raise ValueError(
                f"{FAULT_ENV}={value!r} is not '<command path>:before' or '<command path>:after'"
            )
        log.warning("test-only fault hook armed: SIGKILL %s %s", when, path)
        return cls(path, when)

    def hit(self, path: str, when: str) -> None:
        """SIGKILL this process if the fault is at ``path``, ``when``."""
        if path == self.path and when == self.when:
            log.warning("test-only fault hook: SIGKILL %s %s", when, path)
            os.kill(os.getpid(), signal.SIGKILL)
