"""The payloads of the management node's canonical events (``node.events``), typed.

Every publish site in ``core/`` builds one of these models and publishes its JSON
(:meth:`Event.to_json`), so subscribers, in-process or over the node's socket
(``core.kernel.event_json``), get the same plain dicts with camelCase keys as before the
models existed.  Each model names its path (``PATH``; a pattern with ``{token}`` segments
for a path that carries values, see :meth:`GlobalConfigUpdated.path`) and says when it is
published.  :data:`EVENTS` lists them all; :func:`model_for` finds the model of a path.

A payload that carries a whole resource inventory (the dict of a VO's columns, as the
query APIs answer it) types that part as ``dict[str, Any]``.

The flow engine's trace events are the exception: ``core.kernel.flow`` publishes its
``FlowTraceEvent`` dataclasses on ``/flowchain/trace`` as it always has (they are built per
step of every chain run, and in-process subscribers read their attributes);
:class:`FlowTrace` is the JSON a client gets for one of them.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import ConfigDict

from contracts.base import Wire

ErrorJson = dict[str, Any]
"""An ``ErrorCode.to_dict()``: ``{code, description, details, cause, location?, ...}``."""


class Event(Wire):
    """A canonical event's payload.  A field the publisher leaves out (an optional part)
    is absent from the payload, never ``null``; a key the model does not know is refused."""

    model_config = ConfigDict(extra="forbid")

    PATH: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """The payload as published: camelCase names, every field the publisher set."""
        return self.model_dump(by_alias=True, mode="json", exclude_unset=True)


# -- resources ---------------------------------------------------------------------------


class VmStateChanged(Event):
    """A VM's state changed (``core.vm.plugin``: every state machine transition that
    changes it, whoever caused it: an API call, the agent's report, a host going down)."""

    PATH = "/vm/state/change"
    vm_uuid: str
    old_state: str
    new_state: str
    inventory: dict[str, Any]
    """The VM's inventory after the change."""


class VmDeleted(Event):
    """A VM's row is gone (expunged, or a create rolled back: ``core.vm.create_flows``)."""

    PATH = "/vm/deleted"
    vm_uuid: str


class HostStatusChanged(Event):
    """A host's connection status changed (Connecting, Connected, Disconnected):
    ``core.host.plugin``, at connect, reconnect and when its ping fails."""

    PATH = "/host/status/change"
    host_uuid: str
    old_status: str
    new_status: str
    inventory: dict[str, Any]
    """The host's inventory after the change."""


class ApplianceVmStatusChanged(Event):
    """An appliance VM's (a virtual router's) status changed (``core.virtual_router``):
    when its agent connects or stops answering, and ``Destroyed`` when it is gone (then
    without ``inventory``)."""

    PATH = "/appliance-vm/status/change"
    appliance_vm_uuid: str
    old_status: str | None
    new_status: str
    inventory: dict[str, Any] | None = None
    """The appliance VM's inventory after the change; absent once it is destroyed."""


class ApplianceVmRepaired(Event):
    """A virtual router's agent answered a ping saying it repaired what had drifted from its
    desired state (``core.virtual_router.plugin``'s ping tracker)."""

    PATH = "/appliance-vm/repaired"
    appliance_vm_uuid: str
    repaired: list[str]


class ImageDownloadProgress(Event):
    """An agent reported the progress of an image download the core started
    (``core.image.plugin``, from the agent's ``REPORT_PROGRESS``)."""

    PATH = "/image/download/progress"
    image_uuid: str
    backup_storage_uuid: str
    stage: str
    progress: int
    total: int


class L2NetworkUnrealizable(Event):
    """An L2 network attached to a host's cluster cannot be realised on that host (no
    enabled plugin does its type there): ``core.network.l2.plugin`` at host connect; its
    ``UNREALIZABLE_PATH`` is this model's path."""

    PATH = "/l2Network/unrealizable"
    l2_network_uuid: str
    l2_network_name: str
    host_uuid: str
    reason: str


class GlobalConfigUpdated(Event):
    """A global config's value changed (``core.config.plugin``), after the update extensions
    ran.  Published on ``/globalConfig/update/<category>/<name>`` (:meth:`path`)."""

    PATH = "/globalConfig/update/{category}/{name}"
    category: str
    name: str
    old_value: str
    new_value: str

    def path(self) -> str:
        """The path this event is published on."""
        return self.PATH.format(category=self.category, name=self.name)


class GcJobUpdated(Event):
    """A garbage-collection job changed: submitted, claimed to run, its run ended
    (``core.gc.runner``)."""

    PATH = "/gc/job/update"
    uuid: str
    name: str
    old_status: str | None
    """None when the job was just submitted."""
    new_status: str
    inventory: dict[str, Any] | None
    """The job's inventory (None while it is claimed to run)."""


class GcJobDeleted(Event):
    """A garbage-collection job is gone: DeleteGarbageCollector, or pruned past its
    retention (``core.gc``)."""

    PATH = "/gc/job/deleted"
    uuid: str
    name: str


class _Orphan(Event):
    host_uuid: str
    kind: str
    name: str
    ref: str
    detail: str
    first_seen: str
    """ISO date the reconciler first saw it."""


class OrphanFound(_Orphan):
    """The reconciler found an object on a host that no resource owns (``core.reconcile``)."""

    PATH = "/reconcile/orphan/found"


class OrphanRemoved(_Orphan):
    """The reconciler removed an orphan past its grace period (``core.reconcile``)."""

    PATH = "/reconcile/orphan/removed"


# -- operations (the bus, the flow engine, recovery, the operations journal) -------------------


class ApiCallStarted(Event):
    """An API call that may change something started (``core.kernel.bus``; see
    ``core.kernel.operation``).  The path is ``core.kernel.operation.API_CALL_START_PATH``."""

    PATH = "/api/call/start"
    operation_id: str
    parent_operation_id: str | None
    api_name: str
    params: dict[str, Any]
    """The call's parameters as JSON, secrets masked."""
    resource_uuids: list[str]
    started_at: float


class ApiCallDone(Event):
    """An API call that started with :class:`ApiCallStarted` ended (``core.kernel.bus``).
    The path is ``core.kernel.operation.API_CALL_DONE_PATH``."""

    PATH = "/api/call/done"
    operation_id: str
    api_name: str
    success: bool
    error: ErrorJson | None
    resource_uuid: str | None
    resource_name: str | None
    duration: float


class FlowTrace(Event):
    """One trace point of a flow chain run, as a client gets it (``core.kernel.flow``'s
    ``FlowTraceEvent``, converted by ``core.kernel.event_json.to_json``).  Published when
    someone listens on ``FLOW_TRACE_PATH``, at every chain start, step start/end/skip/
    failure, rollback start, step rollback and chain end.  Not built by the publisher (the
    kernel's hot path publishes its dataclass; see the module's docstring)."""

    PATH = "/flowchain/trace"
    kind: str
    chain_name: str
    chain_id: str
    parent_chain_id: str | None
    step: str | None
    index: int | None
    total: int
    at: float
    duration: float | None
    state: str | None
    error: ErrorJson | None
    operation_id: str | None
    steps: list[str] | None = None
    """Only in ``chain-start``: every step's name."""


class RollbackHandedOver(Event):
    """A chain run's rollback failed and was handed to garbage collection, which finishes it
    (``core.kernel.flow``; ``core.kernel.flow_recovery`` at start-up).  Path:
    ``core.kernel.flow.ROLLBACK_HANDED_OVER_PATH``."""

    PATH = "/flowchain/rollback/handedOver"
    run_id: str
    chain_name: str
    operation_id: str | None
    resource_uuid: str | None
    resource_name: str | None
    hosts: list[str]
    """The hosts whose agents the rollbacks call (a reconnect retries the job)."""
    error: str


class RecoveryStarted(Event):
    """At start-up, a chain run a crash interrupted is being taken up
    (``core.kernel.flow_recovery.RECOVERY_START_PATH``)."""

    PATH = "/flowchain/recovery/start"
    operation_id: str
    run_id: str
    chain_name: str
    api_name: str | None
    resource_uuid: str | None
    resource_name: str | None
    started_at: float
    pid: int
    resumable: bool
    error: ErrorJson


class RecoveryDone(Event):
    """An interrupted run taken up at start-up ended (``RECOVERY_DONE_PATH``); ``status`` is
    a ``FlowChainStatus``."""

    PATH = "/flowchain/recovery/done"
    operation_id: str
    run_id: str
    status: str
    error: ErrorJson | None


class RollbackFinished(Event):
    """The rest of a handed-over rollback ran (``core.kernel.flow_recovery.finish_rollback``,
    path ``ROLLBACK_FINISHED_PATH``): what the run held is free."""

    PATH = "/flowchain/rollback/finished"
    operation_id: str | None
    run_id: str
    chain_name: str
    resource_uuid: str | None


class OperationStep(Event):
    index: int
    name: str | None
    state: str
    started_at: float | None
    duration: float | None
    revert_duration: float | None
    error: ErrorJson | None


class OperationChain(Event):
    id: str
    name: str
    parent_id: str | None
    status: str
    started_at: float
    duration: float | None
    error: ErrorJson | None
    steps: list[OperationStep]


class OperationUpdate(Event):
    """The whole record of one operation (the inventory of ``OperationLogVO``), each time it
    changes (``core.operation_log``, when someone listens; path ``OPERATION_UPDATE_PATH``):
    an API call or a chain run with no call, with its chains and their steps."""

    PATH = "/operation/update"
    uuid: str
    name: str
    api_name: str | None
    parent_uuid: str | None
    params: dict[str, Any] | None
    resource_uuid: str | None
    resource_name: str | None
    resource_uuids: list[str]
    status: str
    create_date: str
    duration: float | None
    error: ErrorJson | None
    chains: list[OperationChain]


EVENTS: tuple[type[Event], ...] = (
    VmStateChanged,
    VmDeleted,
    HostStatusChanged,
    ApplianceVmStatusChanged,
    ApplianceVmRepaired,
    ImageDownloadProgress,
    L2NetworkUnrealizable,
    GlobalConfigUpdated,
    GcJobUpdated,
    GcJobDeleted,
    OrphanFound,
    OrphanRemoved,
    ApiCallStarted,
    ApiCallDone,
    FlowTrace,
    RollbackHandedOver,
    RecoveryStarted,
    RecoveryDone,
    RollbackFinished,
    OperationUpdate,
)
"""Every canonical event the core publishes."""

_BY_PATH: dict[str, type[Event]] = {}
_PATTERNS: list[tuple[re.Pattern[str], type[Event]]] = []
for _model in EVENTS:
    if "{" in _model.PATH:
        _PATTERNS.append(
            (re.compile("^" + re.sub(r"\{[A-Za-z_]+\}", "[^/]+", _model.PATH) + "$"), _model)
        )
    else:
        _BY_PATH[_model.PATH] = _model


def model_for(path: str) -> type[Event] | None:
    """The model of the events published on ``path`` (a path or a model's pattern)."""
    found = _BY_PATH.get(path)
    if found is not None:
        return found
    for pattern, model in _PATTERNS:
        if pattern.match(path) or path == model.PATH:
            return model
    return None
