"""Custom messages posted between the app and its screens.

They live in the ``ztui`` namespace (handlers ``on_ztui_node_event``…), so a view's
``on_node_event(path, data)`` hook is never mistaken for a Textual handler.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from ztui.session import NodeSession


class NodeConnected(Message, namespace="ztui"):
    """The app's session reached the management node; screens may now query it."""

    def __init__(self, session: NodeSession) -> None:
        super().__init__()
        self.session = session


class NodeEvent(Message, namespace="ztui"):
    """A canonical event of the node (``/vm/state/change``…), as JSON-able data."""

    def __init__(self, path: str, data: Any) -> None:
        super().__init__()
        self.path = path
        self.data = data


class OperationUpdated(Message, namespace="ztui"):
    """An operation (an API call and its flow chains) changed: ``record`` is all of it."""

    def __init__(self, record: dict[str, Any]) -> None:
        super().__init__()
        self.record = record
