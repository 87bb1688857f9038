"""Waiting for a virtual-router agent's socket means waiting until it listens."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from agent.network.processes import AppliancePaths, ProcessTable, wait_for_socket
from agentkit.errors import AgentError


def test_a_bound_socket_that_does_not_listen_yet_is_not_ready(tmp_path: Path) -> None:
    paths = AppliancePaths(tmp_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(paths.socket))  # the file exists; a connection would be refused
        with pytest.raises(AgentError, match="did not listen on"):
            wait_for_socket(ProcessTable(), os.getpid(), paths, timeout=0.2)


def test_it_returns_once_the_socket_listens(tmp_path: Path) -> None:
    paths = AppliancePaths(tmp_path)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(paths.socket))
        listen_later = threading.Timer(0.1, server.listen)
        listen_later.start()
        t0 = time.monotonic()
        wait_for_socket(ProcessTable(), os.getpid(), paths, timeout=5)
        assert time.monotonic() - t0 >= 0.1
        listen_later.join()
