"""The metadata server in the appliance: HTTP on 169.254.169.254:80, each request answered
with the documents of the entry its source address names.

A guest is hostile: only GET, a bounded request line and headers, the path matched against
a fixed set (no file is ever read), and the peer's MAC, read from the appliance's neighbour
table, must be the entry's (a guest that took another's address without its MAC gets
nothing).  An unknown peer or path is a 404.
"""

from __future__ import annotations

import logging
import re
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web
from pyroute2 import AsyncIPRoute

from zsl_userdata.contract import UserdataEntryTO
from zsl_userdata.documents import meta_data, user_data

log = logging.getLogger(__name__)
Lookup = Callable[[str], UserdataEntryTO | None]
NeighbourMac = Callable[[str], Awaitable[str | None]]

_VERSION = r"[A-Za-z0-9._-]{1,32}"
ROUTES: dict[re.Pattern[str], str] = {
    re.compile(r"/nocloud/meta-data"): "meta-data",
    re.compile(r"/nocloud/user-data"): "user-data",
    re.compile(r"/nocloud/vendor-data"): "vendor-data",
    re.compile(rf"/{_VERSION}/meta-data/?"): "ec2-index",
    re.compile(rf"/{_VERSION}/meta-data/instance-id"): "instance-id",
    re.compile(rf"/{_VERSION}/meta-data/local-hostname"): "local-hostname",
    re.compile(rf"/{_VERSION}/user-data"): "user-data",
}
MAX_LINE, MAX_FIELD, MAX_HEADERS = 1024, 2048, 32
"""What a request may be: a short request line, few short headers (a GET has no body)."""


def document(entry: UserdataEntryTO, name: str) -> bytes:
    if name == "meta-data":
        return meta_data(entry).encode()
    if name == "user-data":
        return user_data(entry)
    if name == "instance-id":
        return entry.vm_uuid.encode()
    if name == "local-hostname":
        return entry.hostname.encode()
    if name == "ec2-index":
        return b"instance-id\nlocal-hostname\n"
    return b""  # vendor-data: none


def route_of(path: str) -> str | None:
    return next((name for pattern, name in ROUTES.items() if pattern.fullmatch(path)), None)


async def neighbour_mac(ip: str) -> str | None:
    """The MAC the appliance's neighbour table holds for ``ip``, if any."""
    async with AsyncIPRoute() as ipr:
        async for n in await ipr.get_neighbours(family=socket.AF_INET, dst=ip):
            mac = n.get("NDA_LLADDR")
            if mac:
                return str(mac).lower()
    return None


def make_app(lookup: Lookup, mac_of: NeighbourMac | None) -> web.Application:
    """The server's application.  ``mac_of`` None: the peer's MAC is not checked (tests
    over loopback)."""

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.method != "GET":
            return web.Response(status=405, headers={"Allow": "GET"})
        peer = request.remote or ""
        entry = lookup(peer)
        name = route_of(request.path)
        if entry is None or name is None:
            return web.Response(status=404, text="not found\n")
        if mac_of is not None:
            mac = await mac_of(peer)
            if mac != entry.mac:
                log.warning("refused %s: its MAC is %s, not %s", peer, mac, entry.mac)
                return web.Response(status=404, text="not found\n")
        return web.Response(body=document(entry, name), content_type="text/plain")

    app = web.Application(client_max_size=1024)
    app.router.add_route("*", "/{tail:.*}", handle)
    return app


class MetadataServer:
    """The HTTP server on ``host``:``port`` (started and stopped by the plugin)."""

    def __init__(self, lookup: Lookup, mac_of: NeighbourMac | None = neighbour_mac) -> None:
        self.lookup = lookup
        self.mac_of = mac_of
        self._runner: web.AppRunner | None = None

    @property
    def running(self) -> bool:
        return self._runner is not None and bool(self._runner.sites)

    async def start(self, host: str, port: int) -> None:
        if self.running:
            return
        await self.stop()
        runner = web.AppRunner(
            make_app(self.lookup, self.mac_of),
            access_log=None,
            keepalive_timeout=5,
            shutdown_timeout=1.0,
            max_line_size=MAX_LINE,
            max_field_size=MAX_FIELD,
            max_headers=MAX_HEADERS,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
