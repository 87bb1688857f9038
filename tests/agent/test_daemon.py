"""The agents' stop signals: the agent's own SIGTERM stops it; a SIGTERM that a forked
child (pyroute2 forks one per request into another namespace) gets does not."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator

import pytest

from agentkit.daemon import on_stop_signals


@pytest.fixture
def restore_handlers() -> Iterator[None]:
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


async def test_only_the_agents_own_sigterm_stops_it(restore_handlers: None) -> None:
    stop = asyncio.Event()
    on_stop_signals(asyncio.get_running_loop(), stop)
    child = os.fork()
    if child == 0:  # a child forked without exec, as pyroute2's netns workers are
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.2)
        os._exit(0)
    os.waitpid(child, 0)
    await asyncio.sleep(0.3)
    assert not stop.is_set(), "a child's SIGTERM stopped the agent"
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(stop.wait(), 5)
