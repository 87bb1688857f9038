"""Calling the appliance agent as the core does: POST JSON over its Unix socket with the token."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp


class VrClient:
    def __init__(self, socket_path: str, token: str) -> None:
        self.socket_path = socket_path
        self.token = token
        self.session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=socket_path),
            timeout=aiohttp.ClientTimeout(total=60),
        )

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def close(self) -> None:
        await self.session.close()

    async def post(
        self, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any]]:
        async with self.session.post(
            f"http://vr{path}", json=body if body is not None else {}, headers=headers
        ) as resp:
            return resp.status, await resp.json()

    async def call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        status, answer = await self.post(path, body, self.auth)
        assert status == 200, (status, answer)
        return answer

    async def ok(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        answer = await self.call(path, body)
        assert answer["success"] is True, f"{path} failed: {answer}"
        assert answer["error"] == ""
        return answer

    async def fails(self, path: str, body: dict[str, Any] | None = None) -> str:
        """Call ``path``, insist it fails; its error."""
        answer = await self.call(path, body)
        assert answer["success"] is False, f"{path} unexpectedly succeeded: {answer}"
        assert answer["error"]
        return str(answer["error"])


def dhcp_entry(
    ip: str,
    mac: str,
    vr_nic_mac: str,
    *,
    hostname: str = "",
    domain: str = "",
    gateway: str = "",
    netmask: str = "255.255.255.0",
    dns: list[str] | None = None,
    default: bool = True,
) -> dict[str, Any]:
    """A DhcpEntry as the core sends it; the gateway defaults to .1 of the /24."""
    return {
        "ip": ip,
        "mac": mac,
        "netmask": netmask,
        "gateway": gateway or ip.rsplit(".", 1)[0] + ".1",
        "hostname": hostname,
        "dnsDomain": domain,
        "dns": dns if dns is not None else [],
        "isDefaultL3Network": default,
        "vrNicMac": vr_nic_mac,
    }


def snat(private_mac: str, private_ip: str, public_mac: str, public_ip: str) -> dict[str, Any]:
    return {
        "privateNicMac": private_mac,
        "privateNicIp": private_ip,
        "snatNetmask": "255.255.255.0",
        "publicNicMac": public_mac,
        "publicIp": public_ip,
    }


async def wait_for(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,
    what: str = "the condition",
) -> None:
    """Poll ``check`` (sync or async) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.05)
