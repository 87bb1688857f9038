"""The test-only fault hook's setting (agentkit.fault); the kill itself is exercised on the
real host by tests/system/test_agent_crash.py."""

from __future__ import annotations

import pytest

from agentkit.fault import FAULT_ENV, Fault
from agentkit.server import AgentServer, CommandRegistry


async def _no_callback(_url: str, _task: str, _answer: dict) -> bool:
    return True


def test_unset_or_empty_is_off() -> None:
    assert Fault.from_env({}) is None
    assert Fault.from_env({FAULT_ENV: ""}) is None


def test_a_path_and_when() -> None:
    assert Fault.from_env({FAULT_ENV: "/vm/start:after"}) == Fault("/vm/start", "after")
    assert Fault.from_env({FAULT_ENV: "/adddhcp:before"}) == Fault("/adddhcp", "before")


@pytest.mark.parametrize("value", ["/vm/start", "/vm/start:during", "vm/start:before", ":after"])
def test_a_malformed_value_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=FAULT_ENV):
        Fault.from_env({FAULT_ENV: value})


def test_the_server_reads_it_once_at_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(FAULT_ENV, raising=False)
    assert AgentServer(CommandRegistry(), "t", _no_callback).fault is None
    monkeypatch.setenv(FAULT_ENV, "/host/ping:before")
    server = AgentServer(CommandRegistry(), "t", _no_callback)
    monkeypatch.delenv(FAULT_ENV)
    assert server.fault == Fault("/host/ping", "before")
