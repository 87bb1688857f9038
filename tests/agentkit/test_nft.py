"""agentkit.nft: one transaction per ruleset, errors that name nft's complaint.

Runs the real ``nft`` in a throwaway network namespace (root only), so nothing
touches the host's ruleset."""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from agentkit import nft as nftkit
from agentkit.errors import AgentError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for a namespace")


@pytest.fixture
def in_netns(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every nft call below runs inside a fresh namespace (a wrapper script as the binary)."""
    name = f"zsltest-nft-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    wrapper = f"/tmp/{name}.sh"
    with open(wrapper, "w") as f:
        f.write(f'#!/bin/sh\nexec ip netns exec {name} nft "$@"\n')
    os.chmod(wrapper, 0o755)
    monkeypatch.setattr(nftkit, "NFT", wrapper)
    try:
        yield
    finally:
        os.unlink(wrapper)
        subprocess.run(["ip", "netns", "del", name], check=True)


def binary() -> str:
    return nftkit.NFT


async def test_apply_then_list_then_json(in_netns: None) -> None:
    script = "table ip zsl_t {\n\tchain c {\n\t\ttype filter hook forward priority 0;\n\t}\n}\n"
    await nftkit.apply_ruleset(script, "test", binary=binary())
    assert "chain c" in await nftkit.list_table("ip", "zsl_t", binary=binary())
    items = await nftkit.list_table_json("ip", "zsl_t", binary=binary())
    assert [i["chain"]["name"] for i in items if "chain" in i] == ["c"]


async def test_missing_table_lists_as_empty(in_netns: None) -> None:
    assert await nftkit.list_table("ip", "zsl_none", binary=binary()) == ""
    assert await nftkit.list_table_json("ip", "zsl_none", binary=binary()) == []


async def test_a_refused_transaction_names_what_and_changes_nothing(in_netns: None) -> None:
    script = "table ip zsl_t {\n\tchain ok {\n\t}\n\tchain fwd {\n\t}\n}\n"  # fwd is a keyword
    with pytest.raises(AgentError, match="nft refused the test ruleset"):
        await nftkit.apply_ruleset(script, "test", binary=binary())
    assert await nftkit.list_table("ip", "zsl_t", binary=binary()) == ""


def test_sync_form_raises_with_nfts_error(in_netns: None) -> None:
    with pytest.raises(AgentError, match="No such file or directory"):
        nftkit.nft(["list", "table", "ip", "zsl_none"], binary=binary())


def test_a_missing_binary_names_the_package() -> None:
    with pytest.raises(AgentError, match="Debian package nftables"):
        nftkit.nft(["list", "tables"], binary="/nonexistent/nft")
