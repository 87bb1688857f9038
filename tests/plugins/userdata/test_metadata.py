"""The metadata server and the router-agent plugin, without a namespace: the documents a
guest reads, what a hostile guest gets (nothing), and the simulated agent's state."""

from __future__ import annotations

import base64
import email
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from zsl_userdata.contract import UserdataEntryTO
from zsl_userdata.metadata import MetadataServer, make_app
from zsl_userdata.vr_agent import SIMULATED_STATE, MetadataCommands

from agentkit.errors import ArgumentError
from virtual_router.app import make_router

UUID = "0123456789abcdef0123456789abcdef"
SCRIPT = b"#!/bin/sh\necho HELLO-$((6*7))\n"
KEY = 'ssh-ed25519 AAAAC3Nza "quoted" alice@lab'
MAC = "52:54:00:12:34:56"


def entry(ip: str = "127.0.0.1", user_data: bytes = SCRIPT, keys: list[str] | None = None) -> Any:
    return UserdataEntryTO(
        ip=ip,
        mac=MAC,
        vm_uuid=UUID,
        hostname="web-1",
        user_data=base64.b64encode(user_data).decode(),
        ssh_keys=keys or [],
    )


async def client_for(
    entries: dict[str, UserdataEntryTO], macs: dict[str, str] | None = None
) -> TestClient:  # type: ignore[type-arg]
    async def mac_of(ip: str) -> str | None:
        return (macs or {}).get(ip)

    app = make_app(entries.get, mac_of if macs is not None else None)
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


@pytest.fixture
async def served() -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    client = await client_for({"127.0.0.1": entry()}, {"127.0.0.1": MAC})
    yield client
    await client.close()


async def get(client: Any, path: str) -> tuple[int, bytes]:
    resp = await client.get(path)
    return resp.status, await resp.read()


async def test_nocloud_and_ec2_documents(served: Any) -> None:
    assert await get(served, "/nocloud/meta-data") == (
        200,
        f"instance-id: {UUID}\nlocal-hostname: web-1\n".encode(),
    )
    assert await get(served, "/nocloud/user-data") == (200, SCRIPT)
    assert await get(served, "/nocloud/vendor-data") == (200, b"")
    for version in ("latest", "2009-04-04"):
        assert await get(served, f"/{version}/meta-data/instance-id") == (200, UUID.encode())
        assert await get(served, f"/{version}/meta-data/local-hostname") == (200, b"web-1")
        assert await get(served, f"/{version}/user-data") == (200, SCRIPT)
        assert await get(served, f"/{version}/meta-data/") == (
            200,
            b"instance-id\nlocal-hostname\n",
        )


async def test_ssh_keys_are_a_second_cloud_config_part() -> None:
    client = await client_for({"127.0.0.1": entry(keys=[KEY])})
    try:
        status, body = await get(client, "/nocloud/user-data")
        assert status == 200
        message = email.message_from_bytes(body)
        parts = [p for p in message.walk() if not p.is_multipart()]
        assert [p.get_content_type() for p in parts] == [
            "text/x-shellscript",
            "text/cloud-config",
        ]
        assert parts[0].get_payload(decode=True) == SCRIPT
        config = parts[1].get_payload(decode=True).decode()
        assert config == f"#cloud-config\nssh_authorized_keys:\n  - {json.dumps(KEY)}\n"
    finally:
        await client.close()
    only_keys = await client_for({"127.0.0.1": entry(user_data=b"", keys=[KEY])})
    try:
        assert (await get(only_keys, "/latest/user-data"))[1].startswith(b"#cloud-config\n")
    finally:
        await only_keys.close()


@pytest.mark.parametrize(
    "path",
    [
        "/etc/passwd",
        "/nocloud/../../etc/passwd",
        "/nocloud/meta-data/../../../etc/shadow",
        "/nocloud/user-data/x",
        "/latest/meta-data/public-keys",
        "/a/b/user-data",
        "/",
    ],
)
async def test_other_paths_are_not_found(served: Any, path: str) -> None:
    resp = await served.get(path)
    assert resp.status == 404


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def test_only_get_and_bounded_requests() -> None:
    server = MetadataServer({"127.0.0.1": entry()}.get, mac_of=None)
    port = free_port()
    await server.start("127.0.0.1", port)
    try:
        assert server.running
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
            for method in ("POST", "PUT", "DELETE"):
                async with session.request(method, "/nocloud/user-data", data=b"x") as resp:
                    assert resp.status == 405
            async with session.get("/nocloud/" + "a" * 2000) as resp:
                assert resp.status in (400, 414)
            async with session.get("/nocloud/meta-data", headers={"X-Big": "b" * 5000}) as resp:
                assert resp.status in (400, 431)
            async with session.get("/nocloud/user-data") as resp:
                assert (resp.status, await resp.read()) == (200, SCRIPT)
    finally:
        await server.stop()
    assert not server.running


async def test_an_unknown_peer_or_a_foreign_mac_gets_nothing() -> None:
    nobody = await client_for({"10.0.0.9": entry("10.0.0.9")}, {"127.0.0.1": MAC})
    spoofer = await client_for({"127.0.0.1": entry()}, {"127.0.0.1": "52:54:00:ff:ff:ff"})
    unresolved = await client_for({"127.0.0.1": entry()}, {})
    try:
        for client in (nobody, spoofer, unresolved):
            assert (await get(client, "/nocloud/meta-data"))[0] == 404
    finally:
        for client in (nobody, spoofer, unresolved):
            await client.close()


# -- the agent plugin, simulated -------------------------------------------------------
async def test_the_simulated_agent_keeps_state_and_refuses_bad_entries(tmp_path: Path) -> None:
    router = make_router(tmp_path, simulate=True)
    plugin = MetadataCommands(router)
    await plugin.start()
    guest = "52:54:00:00:00:01"

    def wire(e: UserdataEntryTO) -> dict[str, Any]:
        return e.to_json()

    def state() -> dict[str, Any]:
        result: dict[str, Any] = json.loads((tmp_path / SIMULATED_STATE).read_text())
        return result

    a, b = entry("10.0.0.5"), entry("10.0.0.6", b"#cloud-config\n{}\n")
    await plugin.sync({"guestMac": guest, "entries": [wire(a)]}, None)  # type: ignore[arg-type]
    assert state() == {"guestMac": guest, "entries": {"10.0.0.5": wire(a)}}
    await plugin.apply({"guestMac": guest, "entries": [wire(b)]}, None)  # type: ignore[arg-type]
    assert set(state()["entries"]) == {"10.0.0.5", "10.0.0.6"}
    assert plugin._lookup("10.0.0.6") == b
    await plugin.release({"ips": ["10.0.0.5", "10.9.9.9"]}, None)  # type: ignore[arg-type]
    assert set(state()["entries"]) == {"10.0.0.6"}
    before = state()
    for bad in (
        {**wire(a), "userData": "%%%"},
        {**wire(a), "hostname": "a b"},
        {**wire(a), "sshKeys": ["a\nb"]},
        {**wire(a), "mac": "not a mac"},
    ):
        with pytest.raises(ArgumentError):
            await plugin.apply({"guestMac": guest, "entries": [bad]}, None)  # type: ignore[arg-type]
    assert state() == before
    assert await plugin.repair() == []  # simulated: nothing to repair
    await plugin.shutdown()


def test_user_data_parts_keep_their_bytes() -> None:
    from zsl_userdata.documents import user_data

    text = "#!/bin/sh\necho héllo\n".encode()
    message = email.message_from_bytes(user_data(entry(user_data=text, keys=[KEY])))
    parts = [p.get_payload(decode=True) for p in message.walk() if not p.is_multipart()]
    assert parts[0] == text
    assert b"Content-Transfer-Encoding: 8bit" in user_data(entry(user_data=text, keys=[KEY]))
    binary = b"\x1f\x8b\x08\x00\xff"  # gzip: no text part can hold it; served as given
    assert user_data(entry(user_data=binary, keys=[KEY])) == binary
