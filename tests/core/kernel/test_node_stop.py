"""A stopping node refuses new calls, lets the calls under way finish within a bound, then
cancels them (their flow chains roll back) and stops regardless."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

import pytest

from core.kernel import node as node_module
from core.kernel.api import ApiMessage, param
from core.kernel.extensions import Plugin
from core.kernel.flow import Flow
from core.kernel.properties import Properties
from core.kernel.service import Service, handles
from tests.conftest import make_node


class Hang(ApiMessage):
    """Run a chain whose second step never ends."""

    name: str = param(default="x")


class MadeSomething(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        HangPlugin.made.append(data["name"])

    async def rollback(self, data: dict[str, Any]) -> None:
        HangPlugin.made.remove(data["name"])


class NeverEnds(Flow):
    async def run(self, data: dict[str, Any]) -> None:
        HangPlugin.started.set()
        await asyncio.Event().wait()

    async def rollback(self, data: dict[str, Any]) -> None:
        pass


class HangPlugin(Plugin, Service):
    implements = (Service,)
    service_id = "hang"
    made: ClassVar[list[str]] = []
    started: ClassVar[asyncio.Event]

    @handles(Hang)
    async def hang(self, msg: Hang) -> dict[str, Any]:
        outcome = (
            await self.node.new_chain("hang")
            .then(MadeSomething())
            .then(NeverEnds())
            .start({"name": msg.name})
        )
        outcome.raise_for_error("hang")
        return {"name": msg.name}


async def test_stop_cancels_what_outlives_the_grace_and_rolls_it_back(
    props: Properties, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_module, "STOP_GRACE", 0.5)
    HangPlugin.made = []
    HangPlugin.started = asyncio.Event()
    node = make_node(props, {"hang": HangPlugin})
    await node.start()
    call = asyncio.create_task(node.call("Hang", {"name": "vm1"}))
    await asyncio.wait_for(HangPlugin.started.wait(), 10)
    assert HangPlugin.made == ["vm1"]
    await asyncio.wait_for(node.stop(), 30)  # bounded: the call never ends by itself
    assert HangPlugin.made == []  # the chain rolled back what it made
    reply = await asyncio.wait_for(call, 10)
    assert not reply.success and reply.error is not None
    assert reply.error.description == "cancelled: the management node stopped while this ran"
