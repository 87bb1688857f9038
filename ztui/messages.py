"""Custom messages posted between the app and its screens."""

from __future__ import annotations

from textual.message import Message

from ztui.session import NodeSession


class NodeConnected(Message):
    """The app's session reached the management node; screens may now query it."""

    def __init__(self, session: NodeSession) -> None:
        super().__init__()
        self.session = session
