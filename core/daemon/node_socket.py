"""A blocking JSON client of the node's socket, with the standard library's ``socket`` only.

``zcli`` and ``zstack-lite`` must answer in little more than Python's own
start-up (the target is 150 ms for a query of 1,000 VMs).  Importing aiohttp
alone takes longer than that, and :mod:`http.client` costs 25 ms of imports
(its e-mail parser and ssl), so these one-shot clients write one HTTP/1.1
request with ``Connection: close`` over the Unix socket and read the answer to
its end.  Long-lived clients (``ztui``) use :class:`core.client.SocketClient`.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 330.0
"""Seconds to wait for an answer: a little more than the node's own API timeout."""
SUCCESS_HEADER = "x-zstack-lite-success"
"""Set by the node on an API reply asked for pre-formatted (``?indent=2``)."""


class NodeUnreachable(ConnectionError):
    """Nothing answers on the socket (no node, or it is going away): the request was not
    sent, so sending it again elsewhere is safe."""


class Answer:
    """One HTTP answer: status, headers (lower-case names) and body bytes."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return {"raw": self.body.decode(errors="replace")}


def _parse(raw: bytes) -> Answer:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        raise ConnectionError(f"the node answered no HTTP: {lines[0][:80]!r}") from None
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunk(body)
    return Answer(status, headers, body)


def _dechunk(data: bytes) -> bytes:
    out, pos = [], 0
    while True:
        end = data.index(b"\r\n", pos)
        size = int(data[pos:end].split(b";")[0], 16)
        if size == 0:
            return b"".join(out)
        out.append(data[end + 2 : end + 2 + size])
        pos = end + 2 + size + 2


class NodeSocket:
    """``GET``/``POST`` JSON to ``<data_dir>/node.sock``, one connection per request."""

    def __init__(self, path: Path, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    def exchange(self, method: str, url: str, body: Any = None) -> Answer:
        """Send one request, read the whole answer.  NodeUnreachable when no node
        accepts the connection."""
        payload = b"" if body is None else json.dumps(body).encode()
        head = f"{method} {url} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n"
        if body is not None:
            head += f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(self.timeout)
            try:
                sock.connect(str(self.path))
            except OSError as exc:
                raise NodeUnreachable(f"no management node answers on {self.path}: {exc}") from exc
            sock.sendall(head.encode() + b"\r\n" + payload)
            chunks = []
            while data := sock.recv(1 << 16):
                chunks.append(data)
        return _parse(b"".join(chunks))

    def get(self, url: str) -> tuple[int, Any]:
        answer = self.exchange("GET", url)
        return answer.status, answer.json()

    def post(self, url: str, body: Any) -> tuple[int, Any]:
        answer = self.exchange("POST", url, body)
        return answer.status, answer.json()

    def answers(self) -> bool:
        """Whether a node answers on the socket now."""
        try:
            return self.exchange("GET", "/v1/ping").status == 200
        except OSError:
            return False
