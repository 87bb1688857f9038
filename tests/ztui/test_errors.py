"""Failures are shown in the UI or, at start-up, end ztui with status 2."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from core.kernel.api import ApiReply
from core.kernel.errors import ErrorCode, OperationError
from core.kernel.properties import Properties, load
from tests.ztui.conftest import wait_until, write_config
from ztui import app as app_module
from ztui.app import ZtuiApp, main
from ztui.screens.base import ZtuiScreen

SIZE = (80, 24)


class QuietStream:
    """An event stream on which nothing happens until it is closed."""

    def __init__(self) -> None:
        self._closed = asyncio.Event()

    def __aiter__(self) -> QuietStream:
        return self

    async def __anext__(self) -> Any:
        await self._closed.wait()
        raise StopAsyncIteration

    async def close(self) -> None:
        self._closed.set()


class FakeClient:
    """An in-process-looking client whose calls answer as the test says."""

    in_process = True

    def __init__(self, answers: Mapping[str, ApiReply | Exception]) -> None:
        self.answers = dict(answers)
        self.closed = False

    async def call(self, api: str, params: Mapping[str, Any]) -> ApiReply:
        answer = self.answers.get(api, self.answers.get("*", ApiReply(inventories=[])))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def apis(self) -> list[dict[str, Any]]:
        return []

    async def subscribe(self, _patterns: Any) -> QuietStream:
        return QuietStream()

    async def close(self) -> None:
        self.closed = True


def fake_app(props: Properties, client: FakeClient) -> ZtuiApp:
    async def connector(_props: Properties) -> FakeClient:
        return client

    return ZtuiApp(props, connector=connector)


def screen_of(app: ZtuiApp) -> ZtuiScreen:
    assert isinstance(app.screen, ZtuiScreen)
    return app.screen


async def test_a_failed_query_is_shown_not_raised(props: Properties) -> None:
    boom = ApiReply.failure(ErrorCode("SYS.1000", "hosts are on fire"))
    client = FakeClient({"QueryHost": boom})
    app = fake_app(props, client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: screen_of(app).loads_completed >= 1)
        status = screen_of(app).status
        assert status.has_class("-error")
        assert "QueryHost: SYS.1000: hosts are on fire" in status.text
    assert client.closed


async def test_an_unreachable_node_is_shown_not_raised(props: Properties) -> None:
    gone = OperationError(ErrorCode("SYS.1007", "cannot reach the node"))
    app = fake_app(props, FakeClient({"*": gone}))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: screen_of(app).loads_completed >= 1)
        assert "SYS.1007: cannot reach the node" in screen_of(app).status.text


async def test_an_unexpected_failure_of_a_refresh_is_reported(props: Properties) -> None:
    app = fake_app(props, FakeClient({"*": RuntimeError("bug")}))
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, ZtuiScreen))
        status = screen_of(app).status
        await wait_until(pilot, lambda: "refreshing failed: RuntimeError('bug')" in status.text)
        assert status.has_class("-error")
        assert app.return_code is None  # still running


async def test_a_node_that_cannot_start_ends_the_app_with_status_2(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    props = load(write_config(tmp_path, tmp_path / "a-file" / "data"), env={})
    app = ZtuiApp(props)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: app.return_code is not None, what="the app to exit")
    assert app.return_code == 2
    assert app.startup_error is not None
    assert "cannot create data dir" in app.startup_error
    assert "\n" not in app.startup_error


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ZSTACK_LITE_* variables, and no root-logger changes from main()."""
    import os

    for name in list(os.environ):
        if name.startswith("ZSTACK_LITE_"):
            monkeypatch.delenv(name)
    monkeypatch.setattr(app_module, "configure_logging", lambda _props, **_kw: None)


def test_main_reports_a_bad_config_in_one_line(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.toml"
    bad.write_text("[core]\nno_such_key = 1\n")
    assert main(["--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err == f"ztui: unknown global property core.no_such_key in {bad}\n"


def test_main_reports_a_missing_config(
    tmp_path: Path, clean_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "--read-only"]) == 2
    assert capsys.readouterr().err.startswith("ztui: config file ")


def test_main_reports_a_node_start_failure_after_the_ui_ends(
    tmp_path: Path,
    clean_env: None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path, tmp_path / "data")
    config.write_text(config.read_text() + '[chains]\nno-such-chain = ["x.Y"]\n')
    run = ZtuiApp.run
    monkeypatch.setattr(ZtuiApp, "run", lambda self: run(self, headless=True, size=SIZE))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ztui: {config} [chains] sets chain no-such-chain")
    assert err.count("\n") == 1


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--config PATH" in out
    assert "--read-only" in out
