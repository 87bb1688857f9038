"""The one JSON-over-HTTP client of the project (aiohttp).

Used for the node's local Unix socket and, later, the host and virtual-router
agents.  Transport failures and non-JSON answers become OperationErrors that
say which endpoint failed and why.  :meth:`JsonHttpClient.stream` reads an
answer of newline-delimited JSON values as they arrive (the node's event stream).
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Sequence
from typing import Any

import aiohttp

from core.kernel.errors import ErrorCode, OperationError, SysErrors


class UnreachableError(OperationError):
    """The endpoint could not be connected to, so the request was never sent (safe to retry)."""


class JsonHttpClient:
    def __init__(
        self,
        base_url: str,
        *,
        unix_socket: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.unix_socket = unix_socket
        self.headers = dict(headers or {})
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # A fresh connection per request on a Unix socket: a kept-alive connection the
            # peer closed while stopping would fail a request it may or may not have read;
            # a new one either connects (and is served to the end) or cannot connect at all.
            connector = (
                aiohttp.UnixConnector(path=self.unix_socket, force_close=True)
                if self.unix_socket
                else None
            )
            self._session = aiohttp.ClientSession(connector=connector, headers=self.headers)
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        timeout: float | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        url = self.base_url + path
        where = f"{method} {url}" + (f" (via {self.unix_socket})" if self.unix_socket else "")
        try:
            async with self._client().request(
                method,
                url,
                json=body,
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=timeout) if timeout else None,
            ) as resp:
                text = await resp.text()
                if resp.status >= 400 and resp.content_type != "application/json":
                    raise _error(f"{where} answered HTTP {resp.status}", text[:500])
                try:
                    return await resp.json(content_type=None)
                except ValueError:
                    raise _error(f"{where} did not answer JSON", text[:500]) from None
        except aiohttp.ClientConnectorError as exc:
            raise UnreachableError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"cannot reach {where}",
                    f"{type(exc).__name__}: {exc}",
                )
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _error(f"cannot reach {where}", f"{type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise OperationError(
                ErrorCode(SysErrors.TIMEOUT, f"{where} timed out after {timeout:g}s")
            ) from None

    async def stream(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str]] = (),
        body: Any = None,
        connect_timeout: float = 30.0,
    ) -> JsonLineStream:
        """Send a request whose answer is newline-delimited JSON, read as it arrives.

        Returns once the answer's headers are in (so the server has set up what the
        stream reports).  No total timeout: the stream lasts until either side ends it.
        An error status raises; an answer ``{"error": {...}}`` raises its ErrorCode.
        """
        url = self.base_url + path
        where = f"{method} {url}" + (f" (via {self.unix_socket})" if self.unix_socket else "")
        try:
            resp = await self._client().request(
                method,
                url,
                params=list(params),
                json=body,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout),
            )
        except aiohttp.ClientConnectorError as exc:
            raise UnreachableError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"cannot reach {where}",
                    f"{type(exc).__name__}: {exc}",
                )
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _error(f"cannot reach {where}", f"{type(exc).__name__}: {exc}") from None
        if resp.status >= 400:
            try:
                text = await resp.text()
            finally:
                resp.release()
            try:
                answer = json.loads(text)
            except ValueError:
                answer = None
            if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
                raise OperationError(ErrorCode.from_dict(answer["error"]))
            raise _error(f"{where} answered HTTP {resp.status}", text[:500])
        return JsonLineStream(resp, where)

    async def post(self, path: str, body: Any, timeout: float | None = None) -> Any:
        return await self.request("POST", path, body, timeout)

    async def get(self, path: str, timeout: float | None = None) -> Any:
        return await self.request("GET", path, None, timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its transports

    async def websocket(
        self,
        path: str,
        params: dict[str, str] | None = None,
        timeout: float = 30.0,
        heartbeat: float | None = 30.0,
    ) -> aiohttp.ClientWebSocketResponse:
        """Open a websocket on ``path`` with this client's headers (its bearer token).  The
        caller reads and closes it; :meth:`close` ends it too.  A refused upgrade (HTTP 401,
        404...), an unreachable endpoint or ``timeout`` seconds without an upgrade is an
        OperationError."""
        url = self.base_url + path
        where = f"websocket {url}" + (f" (via {self.unix_socket})" if self.unix_socket else "")
        try:
            async with asyncio.timeout(timeout):
                return await self._client().ws_connect(url, params=params, heartbeat=heartbeat)
        except aiohttp.WSServerHandshakeError as exc:
            raise _error(f"{where} was refused with HTTP {exc.status}", exc.message) from None
        except aiohttp.ClientConnectorError as exc:
            raise UnreachableError(
                ErrorCode(
                    SysErrors.OPERATION_ERROR,
                    f"cannot reach {where}",
                    f"{type(exc).__name__}: {exc}",
                )
            ) from None
        except TimeoutError:
            raise OperationError(
                ErrorCode(SysErrors.TIMEOUT, f"{where} timed out after {timeout:g}s")
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise _error(f"cannot reach {where}", f"{type(exc).__name__}: {exc}") from None


class JsonLineStream:
    """The JSON values of a streamed answer, one per line (blank lines are skipped)."""

    def __init__(self, response: aiohttp.ClientResponse, where: str) -> None:
        self._resp: aiohttp.ClientResponse | None = response
        self._where = where
        self._buffer = b""
        self._values: deque[Any] = deque()

    async def next(self) -> Any:
        """The next value; raises EOFError when the stream has ended (or broke off)."""
        while not self._values:
            resp = self._resp
            if resp is None:
                raise EOFError(self._where)
            try:
                chunk = await resp.content.readany()
            except (aiohttp.ClientError, OSError):
                chunk = b""  # the server went away: the stream has ended
            if not chunk:
                self._take_lines(self._buffer + b"\n")
                self._buffer = b""
                await self.close()
                continue
            self._take_lines(self._buffer + chunk)
        return self._values.popleft()

    def _take_lines(self, data: bytes) -> None:
        *lines, self._buffer = data.split(b"\n")
        for line in lines:
            if line.strip():
                try:
                    self._values.append(json.loads(line))
                except ValueError:
                    raise _error(
                        f"{self._where} streamed a line that is not JSON",
                        line[:500].decode(errors="replace"),
                    ) from None

    async def close(self) -> None:
        """Stop reading and drop the connection (safe to call twice)."""
        resp, self._resp = self._resp, None
        if resp is not None:
            resp.close()
            await asyncio.sleep(0)


def _error(description: str, details: str) -> OperationError:
    return OperationError(ErrorCode(SysErrors.OPERATION_ERROR, description, details))
