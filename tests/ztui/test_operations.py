"""Pilot tests of the operations view on a simulator lab: operations appear live, Running
then Succeeded with their steps; a create that fails in a flow shows RolledBack, the
failed step and the error's cause chain, and ``/`` finds it by its error code; the log
holds what happened before the app started; Enter follows an operation."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, ClassVar

from core.kernel.flow import Flow
from core.vm.create_flows import DEFAULT_FLOWS as CREATE_FLOWS
from tests.conftest import ok
from tests.core.vm.conftest import Lab
from tests.ztui.conftest import SMALL, app_on, shown, wait_until
from ztui.formatting import Formatter
from ztui.screens.operations import (
    DurationColumn,
    OperationsScreen,
    WhenColumn,
    operation_row,
    sort_key,
    when,
)
from ztui.screens.vms import VmsScreen
from ztui.views import find_view
from ztui.widgets.flow_chain_panel import (
    FlowChainPanel,
    failed_step,
    plain_text,
    render_operation,
)

FAULT = f"{__name__}.InjectedFault"
HELD = f"{__name__}.HeldFlow"
STUCK = f"{__name__}.StuckRollback"


class InjectedFault(Flow):
    """A flow that always fails (inserted into the create chain as a plugin would)."""

    async def run(self, data: dict[str, Any]) -> None:
        raise RuntimeError("injected fault")

    async def rollback(self, data: dict[str, Any]) -> None:
        return None


class StuckRollback(Flow):
    """A flow whose rollback fails."""

    async def run(self, data: dict[str, Any]) -> None:
        return None

    async def rollback(self, data: dict[str, Any]) -> None:
        raise RuntimeError("cannot undo")


class HeldFlow(Flow):
    """A flow that waits until the test releases it (an operation that stays Running)."""

    release: ClassVar[asyncio.Event | None] = None

    async def run(self, data: dict[str, Any]) -> None:
        assert HeldFlow.release is not None
        await HeldFlow.release.wait()

    async def rollback(self, data: dict[str, Any]) -> None:
        return None


def create_params(lab: Lab, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "imageUuid": lab.image_uuid,
        "instanceOfferingUuid": lab.offering["uuid"],
    }


def rows(screen: OperationsScreen) -> list[dict[str, Any]]:
    """The shown rows, top to bottom."""
    table = screen.table
    keys = [table.coordinate_to_cell_key((i, 0)).row_key.value for i in range(table.row_count)]
    return [dict(table.rows_by_key[str(k)]) for k in keys]


def row_of(screen: OperationsScreen, api: str, name: str) -> dict[str, Any] | None:
    for row in screen.table.rows_by_key.values():
        if row.get("apiName") == api and (row.get("params") or {}).get("name") == name:
            return dict(row)
    return None


def watch_statuses(screen: OperationsScreen) -> dict[str, list[str]]:
    """Every status each operation showed (by the resource name of its params)."""
    seen: dict[str, list[str]] = {}
    on_operation = screen.on_operation

    def spy(record: dict[str, Any]) -> None:
        name = str((record.get("params") or {}).get("name"))
        statuses = seen.setdefault(name, [])
        if not statuses or statuses[-1] != record["status"]:
            statuses.append(record["status"])
        on_operation(record)

    screen.on_operation = spy  # type: ignore[method-assign]
    return seen


async def open_ops(pilot: Any) -> OperationsScreen:
    await pilot.press("7")
    return await shown(pilot, OperationsScreen)


async def test_a_create_appears_running_then_succeeded_with_its_steps(lab: Lab) -> None:
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_ops(pilot)
        seen = watch_statuses(screen)
        await ok(lab.node, "CreateVmInstance", **create_params(lab, "web"))
        await wait_until(
            pilot,
            lambda: (row_of(screen, "CreateVmInstance", "web") or {}).get("status") == "Succeeded",
            what="the create to succeed in the log",
        )
        assert seen["web"][0] == "Running" and seen["web"][-1] == "Succeeded"
        top = rows(screen)[0]
        assert top["apiName"] == "CreateVmInstance"
        assert screen.table.cursor_row == 0  # the newest stays under the cursor
        cells = [str(c) for c in screen.table.get_row_at(0)]
        assert cells[1:4] == ["CreateVmInstance", "web", "Succeeded"]
        text = screen.detail.text
        assert "CreateVmInstance web  Succeeded" in text
        assert "VmAllocateHostFlow" in text
        assert "✔" in text and "✘" not in text
        assert "params " in text and "name=web" in text


async def test_a_failed_create_shows_its_rollback_and_cause_chain(lab: Lab) -> None:
    node = lab.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_ops(pilot)
        await ok(node, "CreateVmInstance", **create_params(lab, "good"))
        node.chains.build_all({"createVm": [*CREATE_FLOWS[:3], FAULT, *CREATE_FLOWS[3:]]}, [])
        try:
            reply = await node.call("CreateVmInstance", create_params(lab, "doomed"))
        finally:
            node.chains.build_all({}, [])
        assert not reply.success and reply.error is not None
        await wait_until(
            pilot,
            lambda: (
                (row_of(screen, "CreateVmInstance", "doomed") or {}).get("status") == "RolledBack"
            ),
            what="the failed create in the log",
        )
        doomed = row_of(screen, "CreateVmInstance", "doomed")
        assert doomed is not None and doomed["failedStep"] == "InjectedFault"
        assert rows(screen)[0]["uuid"] == doomed["uuid"]
        text = screen.detail.text
        assert "CreateVmInstance doomed  RolledBack" in text
        assert "✘ 4/" in text and "InjectedFault" in text
        assert "↺" in text  # the three flows before it were rolled back
        assert "injected fault" in text
        assert f"{reply.error.code}: {reply.error.description}" in text
        if reply.error.cause is not None:
            assert f"caused by {reply.error.cause.code}" in text

        # `/` finds it by an error code; `!` keeps the others
        code = reply.error.root_cause().code
        await pilot.press("slash", *code, "enter")
        shown_rows = rows(screen)
        assert [r["uuid"] for r in shown_rows] == [doomed["uuid"]]
        assert f"1 match /{code}" in screen.status.text
        await pilot.press("slash", "home", "!", "enter")
        assert doomed["uuid"] not in [r["uuid"] for r in rows(screen)]
        assert row_of(screen, "CreateVmInstance", "good") is not None
        await pilot.press("escape")
        assert len(rows(screen)) == len(screen.table.rows_by_key)


async def test_a_rollback_that_fails_is_shown(lab: Lab) -> None:
    node = lab.node
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_ops(pilot)
        flows = [*CREATE_FLOWS[:3], STUCK, FAULT, *CREATE_FLOWS[3:]]
        node.chains.build_all({"createVm": flows}, [])
        try:
            reply = await node.call("CreateVmInstance", create_params(lab, "stuck"))
        finally:
            node.chains.build_all({}, [])
        assert not reply.success
        await wait_until(
            pilot,
            lambda: (
                (row_of(screen, "CreateVmInstance", "stuck") or {}).get("status")
                == "RollbackFailed"
            ),
            what="the create whose rollback failed",
        )
        row = row_of(screen, "CreateVmInstance", "stuck")
        assert row is not None and row["failedStep"] == "InjectedFault"
        text = screen.detail.text
        assert "‼ 4/" in text and "StuckRollback" in text
        assert "rollback failed: " in text and "cannot undo" in text
        assert "✘ 5/" in text


async def test_the_log_holds_what_happened_before_the_app_started(lab: Lab) -> None:
    node = lab.node
    vm = await ok(node, "CreateVmInstance", **create_params(lab, "early"))
    await ok(node, "StopVmInstance", uuid=vm["uuid"])
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_ops(pilot)
        shown_rows = rows(screen)
        apis = [r["apiName"] for r in shown_rows]
        assert apis[:2] == ["StopVmInstance", "CreateVmInstance"]  # newest first
        assert "CreateZone" in apis and "AddSimulatorHost" in apis
        stop = shown_rows[0]
        assert stop["resourceName"] == "early"  # the name its create taught
        dates = [r["createDate"] for r in shown_rows]
        assert dates == sorted(dates, reverse=True)
        assert "operations" in screen.status.text


async def held_step_running(node: Any) -> bool:
    for record in await ok(node, "GetRunningOperations"):
        for chain in record["chains"]:
            if any(s["name"] == "HeldFlow" and s["state"] == "RUNNING" for s in chain["steps"]):
                return True
    return False


async def test_an_operation_running_before_the_app_started_is_shown_running(lab: Lab) -> None:
    node = lab.node
    release = HeldFlow.release = asyncio.Event()
    node.chains.build_all({"createVm": [*CREATE_FLOWS, HELD]}, [])
    call = asyncio.create_task(node.call("CreateVmInstance", create_params(lab, "held")))
    try:
        for _ in range(250):
            if await held_step_running(node):
                break
            await asyncio.sleep(0.02)
        app = app_on(node)
        async with app.run_test(size=SMALL) as pilot:
            try:  # (quitting the app stops the node, which waits for the held create)
                screen = await open_ops(pilot)
                held = row_of(screen, "CreateVmInstance", "held")
                assert held is not None and held["status"] == "Running"
                assert app.operations.records.get(held["uuid"]) is None  # GetRunningOperations
                assert str(screen.table.get_row(held["uuid"])[3]) == "Running"
                assert "1 running" in screen.status.text
                screen.table.select_key(held["uuid"])
                await pilot.pause()
                last = f"{len(CREATE_FLOWS) + 1}/{len(CREATE_FLOWS) + 1} HeldFlow"
                assert f"▶ {last}" in screen.detail.text
            finally:
                release.set()
            assert (await call).success
            await wait_until(
                pilot,
                lambda: (
                    (row_of(screen, "CreateVmInstance", "held") or {}).get("status") == "Succeeded"
                ),
                what="the held create to finish",
            )
            assert f"✔ {last}" in screen.detail.text
            assert "running" not in screen.status.text
    finally:
        release.set()
        node.chains.build_all({}, [])


async def test_enter_follows_an_operation_in_the_flow_panel(lab: Lab) -> None:
    node = lab.node
    await ok(node, "CreateVmInstance", **create_params(lab, "first"))
    await ok(node, "CreateVmInstance", **create_params(lab, "second"))
    app = app_on(node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_ops(pilot)
        first = row_of(screen, "CreateVmInstance", "first")
        assert first is not None
        assert screen.table.select_key(first["uuid"])
        await pilot.pause()
        assert "CreateVmInstance first" in screen.detail.text
        await pilot.press("enter")
        assert app.operations.followed_uuid == first["uuid"]
        assert "following CreateVmInstance first" in screen.status.text
        own_panel = screen.query_one(FlowChainPanel)
        assert own_panel.has_class("-shown") and not own_panel.display  # the detail shows it
        await pilot.press("2")
        vms = await shown(pilot, VmsScreen)
        panel = vms.query_one(FlowChainPanel)
        await wait_until(pilot, lambda: "CreateVmInstance first" in panel.text)
        assert "Succeeded" in panel.text


async def test_zoom_gives_the_screen_to_the_detail(lab: Lab) -> None:
    await ok(lab.node, "CreateVmInstance", **create_params(lab, "web"))
    app = app_on(lab.node)
    async with app.run_test(size=SMALL) as pilot:
        screen = await open_ops(pilot)
        await pilot.press("z")
        assert not screen.table.display and screen.detail.has_focus
        await pilot.press("z")
        assert screen.table.display and screen.table.has_focus
        await pilot.press("z", "escape")
        assert screen.table.display


def test_a_row_names_the_resource_and_the_failed_step() -> None:
    record = {
        "uuid": "a" * 32,
        "apiName": "StopVmInstance",
        "params": {"uuid": "b" * 32},
        "resourceUuid": "b" * 32,
        "status": "RollbackFailed",
        "createDate": "2026-01-02T03:04:05",
        "error": {"code": "VM.1003", "description": "stop failed", "cause": {"code": "X.1"}},
        "chains": [
            {
                "id": "c",
                "name": "stopVm",
                "steps": [
                    {"index": 1, "name": "A", "state": "REVERT_FAILURE"},
                    {"index": 2, "name": "B", "state": "FAILURE"},
                ],
            }
        ],
    }
    row = operation_row(record, {"b" * 32: "web"})
    assert row["resourceName"] == "web"
    assert row["failedStep"] == "B"
    assert "VM.1003" in row["searchText"] and "X.1" in row["searchText"]


def test_the_view_is_reachable_by_its_aliases() -> None:
    for word in ("ops", "operations", "op", "log", "history"):
        view = find_view(word)
        assert view is not None and view.screen_type is OperationsScreen


def test_times_and_durations_sort_by_their_values() -> None:
    fmt = Formatter()
    took = DurationColumn("duration", "took")
    durations = [took.cell({"duration": d}, fmt) for d in (2.5, 0.012)]
    assert [str(c) for c in sorted(durations, key=sort_key)] == ["12ms", "2.5s"]
    masked = Formatter(mask_volatile=True)
    cells = [
        WhenColumn("createDate", "when").cell({"createDate": d}, masked)
        for d in ("2026-01-02T10:00:00.5", "2026-01-02T09:00:00")
    ]
    assert [c.sort_value for c in sorted(cells, key=sort_key)] == [  # type: ignore[attr-defined]
        "2026-01-02T09:00:00",
        "2026-01-02T10:00:00.5",
    ]
    now = datetime(2026, 1, 2, 12, tzinfo=UTC)
    today = datetime(2026, 1, 2, 11, 30, 5, tzinfo=UTC).astimezone()
    assert when("2026-01-02T11:30:05", fmt, now) == today.strftime("%H:%M:%S")
    assert when("2025-12-24T08:00:00", fmt, now) == (
        datetime(2025, 12, 24, 8, tzinfo=UTC).astimezone().strftime("%m-%d %H:%M")
    )
    assert when("2026-01-02T11:30:05", masked, now) == "<date>"


def test_the_renderer_nests_chains_under_their_step_and_shows_failed_rollbacks() -> None:
    def step(index: int, name: str, state: str, at: float | None, **kw: Any) -> dict[str, Any]:
        return {"index": index, "name": name, "state": state, "startedAt": at, **kw}

    record = {
        "uuid": "u",
        "apiName": "DoThing",
        "params": {"name": "x"},
        "status": "RollbackFailed",
        "error": {
            "code": "A.1",
            "description": "top",
            "cause": {"code": "B.2", "description": "low"},
        },
        "chains": [
            {
                "id": "root",
                "name": "outer",
                "status": "RollbackFailed",
                "startedAt": 1.0,
                "steps": [
                    step(
                        1,
                        "First",
                        "REVERT_FAILURE",
                        1.0,
                        error={"code": "R.9", "description": "stuck"},
                    ),
                    step(2, "Second", "REVERTED", 2.0, error={"code": "B.2", "description": "low"}),
                ],
            },
            {
                "id": "kid",
                "name": "inner",
                "parentId": "root",
                "status": "RolledBack",
                "startedAt": 2.5,
                "steps": [step(1, "Deep", "FAILURE", 2.5, error={"code": "B.2"})],
            },
        ],
    }
    lines = plain_text(render_operation(record, Formatter(mask_volatile=True))).splitlines()
    assert lines[0] == "DoThing x  RollbackFailed"
    assert lines[1] == "outer [RollbackFailed]"
    assert lines[2] == "  ‼ 1/2 First"
    assert lines[3] == "    rollback failed: R.9: stuck"
    assert lines[4] == "  ✘ 2/2 Second  rolled back"
    assert lines[6] == "    inner [RolledBack]"  # under the step that started it
    assert lines[7] == "      ✘ 1/1 Deep"
    assert lines[-2:] == ["  A.1: top", "  caused by B.2: low"]
    assert failed_step(record) == "Deep"  # the innermost failure


def test_the_renderer_survives_a_parent_cycle() -> None:
    chains = [
        {"id": "a", "name": "A", "parentId": "b", "steps": []},
        {"id": "b", "name": "B", "parentId": "a", "steps": []},
    ]
    text = plain_text(render_operation({"name": "bg", "chains": chains}, Formatter()))
    assert "A [Running]" in text and "B [Running]" in text
    assert "(background)" in text
