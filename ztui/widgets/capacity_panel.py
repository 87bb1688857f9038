"""Per-host capacity on the dashboard: CPU and memory used of what VMs may have, with the
memory each host keeps for itself (``kvm.reservedMemory`` on KVM hosts) shown apart.

A host that is not Connected says why (its problem, as GetManagementNodeStatus tells)
or that it is connecting; with no host, the panel names the cause: still connecting to
the node, hosts that could not be listed, the node's problems (a first-start bootstrap
that could not add this machine), or that none was added.

The core sets ``totalMemoryCapacity`` to the physical memory less the reserved memory
and ``totalCpuCapacity`` to the cores times ``host.cpu.overProvisioning.ratio``; the
VMs that hold capacity take theirs from the ``available*`` columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from ztui.formatting import Formatter

Host = Mapping[str, Any]
BAR_MIN, BAR_MAX = 6, 30
CPU_LABEL, MEM_LABEL = "  CPU ", "  Mem "
"""The bars' labels, indented under their host's title."""
USED, RESERVED, FREE = "█", "▒", "░"
NO_HOSTS = "no hosts: zcli AddKVMHost / AddSimulatorHost, or bootstrap.local_host"
NOT_LOADED = "connecting to the management node…"
NOT_LISTED = "hosts unknown: QueryHost failed (the status line says why)"
NO_HOSTS_YET = "no hosts yet:"


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


@dataclass(frozen=True)
class HostCapacity:
    """What a host inventory says of its capacity, in the units shown."""

    cpu_num: int
    cpu_total: int
    """vCPUs VMs may have: cores x over-provisioning ratio (less any reserved)."""
    cpu_used: int
    physical_memory: int
    memory_total: int
    """Bytes VMs may have: the physical memory less the reserved memory."""
    memory_used: int

    @property
    def reserved_memory(self) -> int:
        return max(self.physical_memory - self.memory_total, 0)

    @classmethod
    def of(cls, host: Host) -> HostCapacity:
        cpu_total = _int(host.get("totalCpuCapacity"))
        memory_total = _int(host.get("totalMemoryCapacity"))
        return cls(
            cpu_num=_int(host.get("cpuNum")),
            cpu_total=cpu_total,
            cpu_used=max(cpu_total - _int(host.get("availableCpuCapacity")), 0),
            physical_memory=max(_int(host.get("totalPhysicalMemory")), memory_total),
            memory_total=memory_total,
            memory_used=max(memory_total - _int(host.get("availableMemoryCapacity")), 0),
        )

    def cpu_text(self) -> str:
        return f"{self.cpu_used}/{self.cpu_total} vCPU · {self.cpu_num} cores"

    def memory_text(self, fmt: Formatter) -> str:
        used, total = fmt.size(self.memory_used), fmt.size(self.memory_total)
        return f"{used}/{total} used · {fmt.size(self.reserved_memory)} reserved"


def load_style(fraction: float) -> str:
    """Green while there is room, yellow from 70 %, red from 90 %."""
    return "green" if fraction < 0.7 else "yellow" if fraction < 0.9 else "bold red"


def bar(width: int, used: float, reserved: float = 0.0) -> Text:
    """``used`` (and ``reserved``) fractions of a ``width``-cell bar; the rest is free."""
    used_cells = round(max(0.0, min(used, 1.0)) * width)
    if used > 0 and used_cells == 0:
        used_cells = 1  # something is used: never show an empty bar
    reserved_cells = min(round(max(0.0, reserved) * width), width - used_cells)
    if reserved > 0 and reserved_cells == 0 and used_cells < width:
        reserved_cells = 1
    free_cells = width - used_cells - reserved_cells
    return Text.assemble(
        (USED * used_cells, load_style(used)),
        (RESERVED * reserved_cells, "yellow dim"),
        (FREE * free_cells, "dim"),
    )


def bar_width(
    width: int, capacity: HostCapacity, fmt: Formatter, label_width: int = len(CPU_LABEL)
) -> int:
    """The widest bar that leaves room for both lines' label and text in ``width`` cells."""
    text = max(len(capacity.cpu_text()), len(capacity.memory_text(fmt)))
    return max(BAR_MIN, min(BAR_MAX, width - label_width - text - 1))


def cpu_line(capacity: HostCapacity, width: int, label: str = CPU_LABEL) -> Text:
    """``CPU ███░░░ 2/40 vCPU · 4 cores`` with a ``width``-cell bar."""
    fraction = capacity.cpu_used / capacity.cpu_total if capacity.cpu_total else 0.0
    return Text.assemble((label, "bold"), bar(width, fraction), " ", capacity.cpu_text())


def memory_line(capacity: HostCapacity, width: int, fmt: Formatter, label: str = MEM_LABEL) -> Text:
    """``Mem ██▒░░░ 1G/7.5G used · 512M reserved``: the bar is of the physical memory."""
    physical = capacity.physical_memory
    used = capacity.memory_used / physical if physical else 0.0
    reserved = capacity.reserved_memory / physical if physical else 0.0
    return Text.assemble(
        (label, "bold"), bar(width, used, reserved), " ", capacity.memory_text(fmt)
    )


def host_title(host: Host, fmt: Formatter) -> Text:
    """``sim  Connected  Simulator tcg`` (the state too when it is not Enabled)."""
    line = Text.assemble((fmt.text(host.get("name")), "bold"), "  ", fmt.state(host.get("status")))
    if host.get("state") and host.get("state") != "Enabled":
        line.append("  ")
        line.append_text(fmt.state(host.get("state")))
    kind = " ".join(
        fmt.text(host.get(f)) for f in ("hypervisorType", "acceleration") if host.get(f)
    )
    if kind:
        line.append(f"  {kind}", style="dim")
    return line


def host_note(host: Host, problem: str | None) -> Text | None:
    """Why a host that is not Connected is not (its problem), or that it is connecting."""
    status = host.get("status")
    if status == "Connected":
        return None
    if problem:
        return Text(f"  ✘ {problem}", style="yellow")
    if status == "Connecting":
        return Text(f"  connecting host {host.get('name')}…", style="dim")
    return None


def capacity_lines(
    host: Host, width: int, fmt: Formatter, problem: str | None = None
) -> list[Text]:
    """A host's title, why it is not Connected (if so), its CPU and memory bars, fitted to
    ``width`` cells."""
    capacity = HostCapacity.of(host)
    cells = bar_width(width, capacity, fmt)
    note = host_note(host, problem)
    return [
        host_title(host, fmt),
        *([note] if note is not None else []),
        cpu_line(capacity, cells),
        memory_line(capacity, cells, fmt),
    ]


def host_problems(status: Mapping[str, Any] | None) -> dict[str, str]:
    """Each host's problem by uuid, from a GetManagementNodeStatus answer."""
    hosts = status.get("hosts") if status is not None else None
    if not isinstance(hosts, list):
        return {}
    return {
        str(h.get("uuid")): str(h["problem"])
        for h in hosts
        if isinstance(h, Mapping) and h.get("problem")
    }


def empty_lines(listed: bool | None, status: Mapping[str, Any] | None) -> list[Text]:
    """What the panel says with no host: its real cause (``listed``: None before the first
    load, False when QueryHost failed)."""
    if listed is None:
        return [Text(NOT_LOADED, style="dim")]
    if not listed:
        return [Text(NOT_LISTED, style="yellow")]
    problems = [str(p) for p in (status or {}).get("problems") or ()]
    if problems:
        return [Text(NO_HOSTS_YET, style="bold yellow")] + [
            Text(f"  ✘ {p}", style="yellow") for p in problems
        ]
    return [Text(NO_HOSTS, style="dim")]


class CapacityPanel(Widget):
    """One block per host: its status, then CPU and memory bars with used/total."""

    DEFAULT_CSS = """
    CapacityPanel {
        height: auto;
        max-height: 13;
        padding: 0 1;
        border-top: solid $primary;
        border-title-color: $text;
        border-title-style: bold;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    """

    hosts: reactive[tuple[Host, ...]] = reactive((), layout=True, always_update=True)
    """Host inventories (QueryHost), in the order shown."""
    listed: reactive[bool | None] = reactive(None, layout=True)
    """None until hosts are first loaded; False when the last QueryHost failed."""
    node_status: reactive[Mapping[str, Any] | None] = reactive(
        None, layout=True, always_update=True
    )
    """The node's GetManagementNodeStatus answer: hosts' problems, the node's problems."""

    def __init__(self, fmt: Formatter, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._fmt = fmt
        self.border_title = "Hosts"

    def watch_hosts(self, hosts: tuple[Host, ...]) -> None:
        self.border_title = f"Hosts · {len(hosts)}"

    def lines(self, width: int) -> list[Text]:
        if not self.hosts:
            return empty_lines(self.listed, self.node_status)
        problems = host_problems(self.node_status)
        found: list[Text] = []
        for host in self.hosts:
            found += capacity_lines(host, width, self._fmt, problems.get(str(host.get("uuid"))))
        return found

    def render(self) -> Text:
        return Text("\n").join(self.lines(self.content_size.width or 40))

    @property
    def text(self) -> str:
        """What the panel shows, as plain text (for tests)."""
        return "\n".join(line.plain for line in self.lines(self.content_size.width or 40))
