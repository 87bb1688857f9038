"""A blocking JSON client of the node's socket, with the standard library only.

``zcli`` and ``zstack-lite`` must answer in little more than Python's own
start-up, and importing aiohttp alone takes longer than that; so these
one-shot clients speak HTTP/1.1 over the Unix socket with :mod:`http.client`.
Long-lived clients (``ztui``) use :class:`core.client.SocketClient` instead.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 330.0
"""Seconds to wait for an answer: a little more than the node's own API timeout."""


class NodeUnreachable(ConnectionError):
    """Nothing answers on the socket (no node, or it is going away)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("node", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self._path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class NodeSocket:
    """``GET``/``POST`` JSON to ``<data_dir>/node.sock``, one connection per request."""

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def request(self, method: str, url: str, body: Any = None) -> tuple[int, Any]:
        """The status and the decoded JSON answer; NodeUnreachable when no node answers
        before the request was sent (so sending it again elsewhere is safe)."""
        conn = _UnixConnection(self.path, self.timeout)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise NodeUnreachable(f"no management node answers on {self.path}: {exc}") from exc
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if payload is not None else {}
            conn.request(method, url, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, {"raw": data.decode(errors="replace")}

    def get(self, url: str) -> tuple[int, Any]:
        return self.request("GET", url)

    def post(self, url: str, body: Any) -> tuple[int, Any]:
        return self.request("POST", url, body)

    def answers(self) -> bool:
        """Whether a node answers on the socket now."""
        try:
            status, _ = self.get("/v1/ping")
        except (NodeUnreachable, OSError):
            return False
        return status == 200
