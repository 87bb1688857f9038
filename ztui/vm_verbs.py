"""The one-key verbs on VMs (start, stop, reboot…), shared by the VMs view and the VM
detail view: their APIs, keys, confirmation questions, and running them on some VMs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.binding import Binding

from ztui.dialogs.confirm import ConfirmDialog, Wording, question

if TYPE_CHECKING:
    from ztui.screens.base import ZtuiScreen

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Verb:
    """A one-key operation on VMs."""

    name: str
    api: str
    past: str
    """What the status line says when it is done: ``stopped``."""
    confirm: bool = False
    warning: Wording | None = None
    """A line the confirmation adds under the question (for one VM, for several)."""

    def question(self, rows: Sequence[Row]) -> str:
        """``Destroy VM web?`` or ``Destroy 2 VMs: web, db?``, and the warning line."""
        names = [str(r.get("name")) for r in rows]
        return question(self.name.capitalize(), VM_NOUN, names, self.warning)


VM_NOUN = Wording("VM", "VMs")


VERBS: dict[str, Verb] = {
    verb.name: verb
    for verb in (
        Verb("start", "StartVmInstance", "started"),
        Verb("stop", "StopVmInstance", "stopped"),
        Verb("reboot", "RebootVmInstance", "rebooted"),
        Verb("pause", "PauseVmInstance", "paused"),
        Verb("resume", "ResumeVmInstance", "resumed"),
        Verb("recover", "RecoverVmInstance", "recovered"),
        Verb(
            "destroy",
            "DestroyVmInstance",
            "destroyed",
            confirm=True,
            warning=Wording(
                "(vm.deletionPolicy decides whether it can be recovered.)",
                "(vm.deletionPolicy decides whether they can be recovered.)",
            ),
        ),
        Verb(
            "expunge",
            "ExpungeVmInstance",
            "expunged",
            confirm=True,
            warning=Wording(
                "Its root volume is deleted for good.", "Their root volumes are deleted for good."
            ),
        ),
    )
}

VERB_KEYS: tuple[tuple[str, str, bool], ...] = (
    ("start", "s", True),
    ("stop", "x", True),
    ("reboot", "b", False),
    ("pause", "p", False),
    ("resume", "u", False),
    ("recover", "R", False),
    ("destroy", "d", True),
    ("expunge", "E", False),
)
"""Each verb's key and whether the footer shows it."""


def verb_bindings(area: str) -> list[Binding]:
    """The verbs' bindings for one place, ids ``<area>.<verb>`` (``ztui.vm.stop``), so
    the same keys act the same everywhere and a keymap can still move them per place."""
    return [
        Binding(key, f"verb('{name}')", name.capitalize(), id=f"{area}.{name}", show=show)
        for name, key, show in VERB_KEYS
    ]


def ask_verb(
    screen: ZtuiScreen,
    name: str,
    rows: Sequence[Row],
    run: Callable[[Verb, list[Row]], object],
) -> None:
    """Call ``run(verb, rows)`` now, or once the user confirmed a destructive verb."""
    verb = VERBS[name]
    if not rows:
        screen.notify("No VM selected.", severity="warning")
        return
    chosen = list(rows)
    if not verb.confirm:
        run(verb, chosen)
        return

    def answered(yes: bool | None) -> None:
        if yes:
            run(verb, chosen)

    screen.app.push_screen(ConfirmDialog(verb.question(chosen), name.capitalize()), answered)


async def run_verb(screen: ZtuiScreen, verb: Verb, rows: Sequence[Row]) -> list[Any]:
    """Call the verb's API on every VM at once; each failure is shown by ``api_call``,
    and when none failed the status line says ``web, db stopped``.  The replies (a VM's
    inventory, or None where it failed), in the order of ``rows``.  The flow-chain panel
    follows every VM's operation."""
    screen.context.operations.expect([str(r["uuid"]) for r in rows])
    results = await asyncio.gather(*(screen.api_call(verb.api, {"uuid": r["uuid"]}) for r in rows))
    done = [str(r["name"]) for r, result in zip(rows, results, strict=True) if result is not None]
    if len(done) == len(rows):
        screen.status.show_info(f"{', '.join(done)} {verb.past}")
    return list(results)


def vm_inventories(results: Sequence[Any]) -> list[dict[str, Any]]:
    """The VM inventories among a verb's replies (a verb may answer nothing)."""
    return [r for r in results if isinstance(r, dict) and r.get("uuid") and r.get("state")]
