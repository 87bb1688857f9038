"""A volume's snapshots as a tree: one line per snapshot (name, size, date, status), a
revert's branch under the snapshot it reverted to, and the snapshot the volume's active
file stands on marked, so where the volume is now reads at a glance."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from ztui.formatting import Formatter
from ztui.volumes import READY, SnapshotNode

CURRENT_MARK = "◀ volume is here"
"""What follows the snapshot the volume's active file stands on."""


def snapshot_label(node: SnapshotNode, fmt: Formatter) -> Text:
    """``snap-1  64K · 2026-12-05 05:40:01 ◀ volume is here`` (a status but Ready shown)."""
    snapshot = node.inventory
    label = Text(str(snapshot.get("name") or "?"), style="bold" if node.current else "")
    details = [fmt.size(snapshot.get("size"))]
    if snapshot.get("full"):
        details.append("full")
    details.append(fmt.date(snapshot.get("createDate")))
    label.append("  " + " · ".join(d for d in details if d), style="dim")
    if snapshot.get("status") not in (None, READY):
        label.append(f" ({snapshot['status']})", style="yellow")
    if node.current:
        label.append(f" {CURRENT_MARK}", style="bold cyan")
    return label


class SnapshotTree(Tree[str]):
    """The snapshots of one volume; a node's data is its snapshot's uuid (the root, the
    volume itself, has none)."""

    DEFAULT_CSS = """
    SnapshotTree {
        height: 1fr;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", id="ztui.tree.down", show=False),
        Binding("k", "cursor_up", "Up", id="ztui.tree.up", show=False),
    ]

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.fmt = fmt
        self.guide_depth = 3
        self.current_snapshot: str | None = None
        """The uuid of the snapshot the shown volume stands on."""

    def show(self, volume: Mapping[str, Any] | None, trees: Iterable[SnapshotNode]) -> None:
        """Show these trees under the volume, expanded, the cursor on the snapshot the
        volume stands on, or kept on another one it was moved to."""
        before = self.cursor_snapshot if self.cursor_snapshot != self.current_snapshot else None
        self.current_snapshot = None
        self.clear()
        if volume is None:
            self.root.set_label(Text("no volume", style="dim"))
            return
        self.root.set_label(Text(str(volume.get("name")), style="bold"))
        target: TreeNode[str] | None = None
        current: TreeNode[str] | None = None

        def add(parent: TreeNode[str], node: SnapshotNode) -> None:
            nonlocal target, current
            label = snapshot_label(node, self.fmt)
            if node.children:
                child = parent.add(label, data=node.uuid, expand=True)
                for grandchild in node.children:
                    add(child, grandchild)
            else:
                child = parent.add_leaf(label, data=node.uuid)
            if node.uuid == before:
                target = child
            if node.current:
                current = child

        for tree in trees:
            add(self.root, tree)
        self.current_snapshot = None if current is None else current.data
        self.root.expand()
        _ = self.last_line  # lays the lines out now, so the nodes have theirs
        chosen = target or current
        if chosen is not None:
            self.move_cursor(chosen)
        else:
            self.cursor_line = 0

    @property
    def cursor_snapshot(self) -> str | None:
        """The uuid of the snapshot under the cursor (None on the volume's line)."""
        node = self.cursor_node
        return None if node is None else node.data
