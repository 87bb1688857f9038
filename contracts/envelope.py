"""What every agent command shares, for the KVM host agent and the router agent alike
(served by ``agentkit.server``), in ZStack's agent shape.

Every command is ``POST <path>`` with a JSON object, authenticated by the header
``Authorization: Bearer <token>`` (a token file of mode 0600 that the caller reads too).
Every answer is a JSON object with ``success`` (bool) and ``error`` (a string, empty on
success) plus the command's own fields.  An unauthenticated request gets 401; an unknown
path 404; a method other than POST 405; a body that is not a JSON object 400.

Asynchronous commands (marked ASYNC in an agent's contract): the caller sends the headers
``taskuuid`` and ``callbackurl``; the agent answers ``{"success": true}`` at once, runs
the command, then POSTs the command's JSON answer to ``callbackurl`` with the header
``taskuuid`` (and the same bearer token), retrying for up to a minute until the callback
answers 2xx or 404 (404 means the caller no longer waits).  Without those headers an
ASYNC command is run synchronously and answered in the body.

Crashes: an agent may die around any command (before it, in it, after it and before its
answer).  The caller's call then fails (a synchronous one when the connection drops, an
ASYNC one when :data:`TASK_STATUS` shows the task gone), and every command is safe to send
again to the next agent, keyed by the resource it names (``vmUuid``, ``installPath``,
``bridgeName``, ``applianceUuid``…), not by the task uuid: what exists already as asked is
answered as made, what a dead agent left half-made is replaced, and deleting what is gone
succeeds; nothing is made twice.  The test-only fault hook ``ZSL_AGENT_FAULT``
(``agentkit.fault``, unset in production) makes an agent SIGKILL itself before or after
one command.

The two commands below are built into every agent's server.
"""

from __future__ import annotations

from types import ModuleType
from typing import Final

from contracts.base import Reply, Request

TASK_STATUS: Final = "/task/status"
"""{taskUuid} -> {taskUuid, running: bool}: whether an ASYNC command called with that task
uuid still runs here, its answer not yet delivered (served by every agent's server).  The
core asks while it waits for a callback: an agent that no longer runs the task (it
restarted) or refuses the connection (it died) will never call back, so the call fails at
once instead of at its timeout."""

TASK_CANCEL: Final = "/task/cancel"
"""{taskUuid} -> {taskUuid, cancelled: bool}: cancel the ASYNC command started with the
``taskuuid`` header ``taskUuid`` and wait for it to end (its callback is never sent);
``cancelled`` is false if no such command runs."""


class TaskStatusRsp(Reply):
    task_uuid: str
    running: bool


class TaskStatusCmd(Request[TaskStatusRsp]):
    PATH = TASK_STATUS
    task_uuid: str


class CancelTaskRsp(Reply):
    task_uuid: str
    cancelled: bool


class CancelTaskCmd(Request[CancelTaskRsp]):
    PATH = TASK_CANCEL
    task_uuid: str


def command_paths(contract: ModuleType) -> frozenset[str]:
    """The command paths an agent's contract module declares: its upper-case ``/…``
    constants, less its ``NOT_COMMANDS`` (reports, streams)."""
    skip: frozenset[str] = getattr(contract, "NOT_COMMANDS", frozenset())
    return frozenset(
        value
        for name, value in vars(contract).items()
        if name.isupper() and isinstance(value, str) and value.startswith("/") and value not in skip
    )
