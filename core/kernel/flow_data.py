"""What a chain's flows share: one typed, validated, serialisable object per chain.

Every declared chain names its data class, a :class:`FlowData` (a pydantic model):
the fields are what crosses steps, so a flow reads only what an earlier flow (or the
caller) declared, never another flow's private key.  Assignments are validated, so a
flow that stores the wrong thing fails at once, in the step that did it.

The object is what the flow journal (:mod:`core.kernel.flow_journal`) writes down
before each step, and what recovery reads back after a crash to roll the chain back:
so a field holds only what can be written as JSON and still means the same thing after
a restart (uuids, paths, numbers; never a client object or a lock).  What a flow needs
at run time and cannot store (the node, an agent client) it reaches through
:attr:`FlowData.node`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

from pydantic import BaseModel, ConfigDict, PrivateAttr

if TYPE_CHECKING:
    from core.kernel.node import ManagementNode

__all__ = ["FlowData", "NoData"]


class FlowData(BaseModel):
    """Base of every chain's data class."""

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    _node: Any = PrivateAttr(default=None)

    @property
    def node(self) -> ManagementNode:
        """The node the chain runs on (not stored: given again at recovery)."""
        node = self._node
        if node is None:
            raise RuntimeError(f"{type(self).__name__} is not bound to a node")
        return node  # type: ignore[no-any-return]

    def bind(self, node: ManagementNode | Any) -> Self:
        """Give the data its node; returns self."""
        self._node = node
        return self

    def hosts(self) -> list[str]:
        """The hosts whose agents this chain's rollbacks call: a rollback that failed (and
        went to a GC job) is tried again as soon as one of them reconnects."""
        return []

    @classmethod
    def restore(cls, text: str, node: ManagementNode | Any) -> Self:
        """Data as the journal wrote it down, bound to ``node`` (validated)."""
        return cls.model_validate_json(text).bind(node)


class NoData(FlowData):
    """The data of a chain whose flows share nothing."""
