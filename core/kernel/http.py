"""The one JSON-over-HTTP client of the project (aiohttp).

Used for the node's local Unix socket and, later, the host and virtual-router
agents.  Transport failures and non-JSON answers become OperationErrors that
say which endpoint failed and why.
"""

from __future__ import annotations

import asyncio
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

    async def post(self, path: str, body: Any, timeout: float | None = None) -> Any:
        return await self.request("POST", path, body, timeout)

    async def get(self, path: str, timeout: float | None = None) -> Any:
        return await self.request("GET", path, None, timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # let the connector close its transports


def _error(description: str, details: str) -> OperationError:
    return OperationError(ErrorCode(SysErrors.OPERATION_ERROR, description, details))
