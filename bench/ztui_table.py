"""ztui: time to first frame, and one VM's state change in a 10,000-VM table.

Run: ``.venv/bin/python bench/ztui_table.py`` (or ``make bench-ztui``).

Everything runs headless (Textual's ``run_test``) in one process, side by side:

(a) first frame: from ``run_test`` entering to the app's first screen being
    ready, for ztui on an empty data dir (it starts its in-process management
    node, which opens the database, runs migrations and starts the plugins)
    versus a bare Textual app with one Static, the floor any Textual UI pays.
(b) a data dir holding 10,000 VMs (rows written straight into the database,
    as many as a big lab, no host needed).  With the VMs view showing all of
    them, one VM's state change is applied the way a ``/vm/state/change``
    event is (``VmsScreen.apply_state_change``: one row, changed cells only)
    versus a full rebuild of the table from the same rows
    (``ResourceTable.show``), medians of repeats.  Each is timed twice: the
    table's own work, and until the app is idle again with the screen
    repainted.  The repaint is Textual drawing the visible rows, the same for
    a 50-VM table (measured too); a burst of changes shares one repaint.
(c) memory: the process's peak Python allocations (tracemalloc) while the
    10,000 rows are loaded and shown, and the RSS growth.

Targets (printed, never asserted): an update under 50 ms, and faster than a rebuild.
"""

from __future__ import annotations

import asyncio
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from textual.app import App, ComposeResult
from textual.widgets import Static

from core.client import InProcessClient, NodeClient
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties, load
from core.vm.models import VmInstanceVO
from ztui.app import ZtuiApp
from ztui.screens.vms import VmsScreen

VMS = 10_000
FEW = 50
UPDATES = 30
REBUILDS = 5
FIRST_FRAMES = 5
UPDATE_TARGET_MS = 50.0
SIZE = (120, 40)


class BareApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Static("hello")


def config(root: Path) -> Properties:
    root.mkdir(parents=True, exist_ok=True)
    path = root / "config.toml"
    path.write_text(f'[core]\ndata_dir = "{root / "data"}"\n[bootstrap]\nlocal_host = "none"\n')
    return load(path, env={})


async def first_frame(app: App[None]) -> float:
    """Seconds until the app's first screen is composed and the app is idle."""
    t0 = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        took = time.perf_counter() - t0
    return took


async def fill(props: Properties, count: int) -> None:
    """``count`` VMs straight into the database (Stopped, no host)."""
    async with ManagementNode(props) as node:

        def insert(session) -> None:  # type: ignore[no-untyped-def]
            session.add_all(
                VmInstanceVO(name=f"vm-{i:05d}", state="Stopped", cpu_num=1, memory_size=1 << 28)
                for i in range(count)
            )

        await node.db.run(insert)


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def in_process_node(props: Properties) -> NodeClient:
    """ztui's connector here: the node in this process (as the tests host it), so that the
    figures are the UI's own and no service outlives the benchmark."""
    node = ManagementNode(props)
    await node.start()
    return InProcessClient(node)


async def table_figures(props: Properties, count: int) -> dict[str, float]:
    """Load ``count`` VMs in the VMs view, then time one-row updates and full rebuilds."""
    app = ZtuiApp(props, connector=in_process_node)
    figures: dict[str, float] = {}
    tracemalloc.start()
    rss_before = rss_mib()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        t0 = time.perf_counter()
        while not (isinstance(app.screen, VmsScreen) and app.screen.loads_completed):
            await pilot.pause(0.01)
        screen = app.screen
        assert isinstance(screen, VmsScreen)
        await pilot.pause()
        figures["load_s"] = time.perf_counter() - t0
        assert screen.table.row_count == count, screen.table.row_count
        _, peak = tracemalloc.get_traced_memory()
        figures["peak_mib"] = peak / 2**20
        figures["rss_growth_mib"] = rss_mib() - rss_before
        tracemalloc.stop()

        rows = list(screen.table.rows_by_key.values())
        applied, painted = [], []
        for i in range(UPDATES):
            row = dict(rows[(i * 337) % count])
            row["state"] = "Running" if row["state"] != "Running" else "Stopped"
            t = time.perf_counter()
            screen.apply_state_change(row)
            applied.append(time.perf_counter() - t)
            await pilot.pause()
            painted.append(time.perf_counter() - t)
        assert screen.table.rows_by_key[row["uuid"]]["state"] == row["state"]
        rebuilt, rebuilt_painted = [], []
        for _ in range(REBUILDS):
            t = time.perf_counter()
            screen.table.show(rows)
            rebuilt.append(time.perf_counter() - t)
            await pilot.pause()
            rebuilt_painted.append(time.perf_counter() - t)
        figures["update_ms"] = statistics.median(applied) * 1000
        figures["update_max_ms"] = max(applied) * 1000
        figures["update_painted_ms"] = statistics.median(painted) * 1000
        figures["rebuild_ms"] = statistics.median(rebuilt) * 1000
        figures["rebuild_painted_ms"] = statistics.median(rebuilt_painted) * 1000
    return figures


async def main() -> None:
    print(f"ztui table benchmark · Python {platform.python_version()} · {sys.platform}")
    root = Path(tempfile.mkdtemp(prefix="zsl-bench-ztui-"))
    try:
        empty = config(root / "empty")
        ztui_frames, bare_frames = [], []
        for _ in range(FIRST_FRAMES):
            bare_frames.append(await first_frame(BareApp()))
            ztui_frames.append(await first_frame(ZtuiApp(empty, connector=in_process_node)))
        ztui_ms = statistics.median(ztui_frames) * 1000
        bare_ms = statistics.median(bare_frames) * 1000
        print(
            f"(a) first frame: ztui {ztui_ms:.0f} ms, bare Textual app {bare_ms:.0f} ms "
            f"= {ztui_ms / bare_ms:.1f}x (median of {FIRST_FRAMES})"
        )

        big, small = config(root / "big"), config(root / "small")
        t = time.perf_counter()
        await fill(big, VMS)
        await fill(small, FEW)
        print(f"    {VMS:,} VMs written in {time.perf_counter() - t:.1f} s")
        f = await table_figures(big, VMS)
        few = await table_figures(small, FEW)
        print(f"(b) VMs view load of {VMS:,} rows: {f['load_s']:.2f} s (until shown)")
        print(
            f"    one state change applied: {f['update_ms']:.2f} ms (worst "
            f"{f['update_max_ms']:.2f}); full rebuild: {f['rebuild_ms']:.0f} ms "
            f"= {f['rebuild_ms'] / f['update_ms']:.0f}x (medians of {UPDATES} and {REBUILDS})"
        )
        painted_ratio = f["rebuild_painted_ms"] / f["update_painted_ms"]
        print(
            f"    until painted: change {f['update_painted_ms']:.0f} ms, rebuild "
            f"{f['rebuild_painted_ms']:.0f} ms = {painted_ratio:.0f}x; "
            f"the same change on a {FEW}-VM table: {few['update_painted_ms']:.0f} ms "
            f"(the repaint of the {SIZE[0]}x{SIZE[1]} screen, whatever the table's size)"
        )
        print(
            f"(c) memory with {VMS:,} rows: peak Python allocations {f['peak_mib']:.0f} MiB, "
            f"RSS growth {f['rss_growth_mib']:.0f} MiB"
        )
        holds = f["update_ms"] < UPDATE_TARGET_MS and f["update_ms"] < f["rebuild_ms"]
        print(
            f"target: a change applied in < {UPDATE_TARGET_MS:.0f} ms and faster than a "
            f"rebuild: {'HOLDS' if holds else 'MISSED'}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
