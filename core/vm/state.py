"""ZStack's VM state machine (VmInstanceState / VmInstanceStateEvent) and the
operations each state allows (AbstractVmInstance's operation checker).

A state change goes through :func:`next_state`; an undefined (state, event)
pair is a bug in the caller and raises.  An API operation a state does not
allow is refused with :func:`check_operation`'s clear error.
"""

from __future__ import annotations

from core.kernel.errors import ErrorCode, OperationError, SysErrors

# -- states -----------------------------------------------------------------------
CREATED = "Created"
STARTING = "Starting"
RUNNING = "Running"
STOPPING = "Stopping"
STOPPED = "Stopped"
REBOOTING = "Rebooting"
DESTROYING = "Destroying"
DESTROYED = "Destroyed"
EXPUNGING = "Expunging"
PAUSING = "Pausing"
PAUSED = "Paused"
RESUMING = "Resuming"
UNKNOWN = "Unknown"
CRASHED = "Crashed"
ERROR = "Error"

INTERMEDIATE = frozenset({STARTING, STOPPING, REBOOTING, DESTROYING, PAUSING, RESUMING, EXPUNGING})

# -- events: user-driven, then reported by the hypervisor ---------------------------
_T: dict[str, dict[str, str]] = {
    CREATED: {
        "starting": STARTING,
        "destroying": DESTROYING,
        "destroyed": DESTROYED,
        "stopped": STOPPED,
        "expunging": EXPUNGING,
    },
    STARTING: {
        "running": RUNNING,
        "stopped": STOPPED,
        "paused": PAUSED,
        "destroying": DESTROYING,
        "unknown": UNKNOWN,
    },
    RUNNING: {
        "running": RUNNING,
        "destroying": DESTROYING,
        "stopping": STOPPING,
        "stopped": STOPPED,
        "rebooting": REBOOTING,
        "pausing": PAUSING,
        "paused": PAUSED,
        "crashed": CRASHED,
        "unknown": UNKNOWN,
    },
    STOPPING: {
        "stopped": STOPPED,
        "destroying": DESTROYING,
        "running": RUNNING,
        "unknown": UNKNOWN,
    },
    STOPPED: {
        "starting": STARTING,
        "stopped": STOPPED,
        "running": RUNNING,
        "paused": PAUSED,
        "destroying": DESTROYING,
        "unknown": UNKNOWN,
    },
    REBOOTING: {
        "running": RUNNING,
        "stopped": STOPPED,
        "unknown": UNKNOWN,
        "destroying": DESTROYING,
    },
    PAUSED: {
        "resuming": RESUMING,
        "stopped": STOPPED,
        "running": RUNNING,
        "stopping": STOPPING,
        "destroying": DESTROYING,
        "unknown": UNKNOWN,
        "paused": PAUSED,
    },
    PAUSING: {"paused": PAUSED, "destroying": DESTROYING, "running": RUNNING, "unknown": UNKNOWN},
    RESUMING: {"running": RUNNING, "destroying": DESTROYING, "paused": PAUSED, "unknown": UNKNOWN},
    UNKNOWN: {
        "destroying": DESTROYING,
        "stopping": STOPPING,
        "unknown": UNKNOWN,
        "paused": PAUSED,
        "running": RUNNING,
        "stopped": STOPPED,
    },
    DESTROYING: {
        "unknown": UNKNOWN,
        "destroyed": DESTROYED,
        "destroying": DESTROYING,
        "running": RUNNING,
        "expunging": EXPUNGING,
        "stopped": STOPPED,
    },
    DESTROYED: {"stopped": STOPPED, "expunging": EXPUNGING, "destroyed": DESTROYED},
    CRASHED: {
        "running": RUNNING,
        "unknown": UNKNOWN,
        "stopping": STOPPING,
        "stopped": STOPPED,
        "rebooting": REBOOTING,
        "crashed": CRASHED,
        "destroyed": DESTROYED,
        "destroying": DESTROYING,
    },
    EXPUNGING: {},
    ERROR: {},
}

REPORTED = {
    "Running": "running",
    "Stopped": "stopped",
    "Paused": "paused",
    "Crashed": "crashed",
    "Unknown": "unknown",
}
"""Agent-reported states -> events."""


def next_state(state: str, event: str) -> str:
    try:
        return _T[state][event]
    except KeyError:
        raise OperationError(
            ErrorCode(
                SysErrors.INVALID_STATE, f"a VM in state {state} cannot take the event {event}"
            )
        ) from None


# -- operations each state allows ---------------------------------------------------
_ALLOWED: dict[str, frozenset[str]] = {
    CREATED: frozenset({"start", "destroy", "expunge"}),
    RUNNING: frozenset({"stop", "reboot", "pause", "destroy", "console"}),
    STOPPED: frozenset({"start", "stop", "destroy"}),
    PAUSED: frozenset({"resume", "stop", "destroy", "console"}),
    UNKNOWN: frozenset({"stop", "destroy", "start"}),
    CRASHED: frozenset({"stop", "start", "reboot", "destroy", "console"}),
    DESTROYED: frozenset({"recover", "expunge"}),
}


def check_operation(name: str, state: str, operation: str) -> None:
    """Refuse ``operation`` on a VM in ``state`` with an error that says what is allowed."""
    allowed = _ALLOWED.get(state, frozenset({"destroy"}) if state in INTERMEDIATE else frozenset())
    if operation not in allowed:
        can = ", ".join(sorted(allowed)) or "nothing"
        raise OperationError(
            ErrorCode(
                SysErrors.INVALID_STATE,
                f"cannot {operation} VM {name}: it is {state}",
                f"a {state} VM allows: {can}",
            )
        )
