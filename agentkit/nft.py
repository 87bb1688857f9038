"""nftables through the ``nft`` command: the one place the agents run it.

Rulesets are applied with ``nft -f -`` so each change is one kernel transaction;
listings come back as text (compared by repairers) or JSON (read by code).  The
synchronous form is for code already on a worker thread (the host agent's network
calls); the asynchronous one for the router agent's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from typing import Any, Final

from agentkit.errors import AgentError

NFT: Final = "/usr/sbin/nft"
NFT_TIMEOUT: Final = 30.0
MISSING = "No such file or directory"
"""What nft says when a listed table or chain does not exist."""


def _not_installed(binary: str) -> AgentError:
    return AgentError(f"{binary} is not installed (Debian package nftables)")


def nft(args: list[str], script: str | None = None, *, binary: str = NFT) -> str:
    """Run ``nft args`` (feeding ``script``) and return its output; fails naming nft's error."""
    try:
        done = subprocess.run(
            [binary, *args],
            input=script,
            capture_output=True,
            text=True,
            timeout=NFT_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise _not_installed(binary) from None
    except subprocess.TimeoutExpired:
        raise AgentError(f"nft {' '.join(args)} did not finish within {NFT_TIMEOUT:g}s") from None
    if done.returncode != 0:
        raise AgentError(f"nft {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


async def run_nft(
    *args: str, stdin: str | None = None, binary: str = NFT, timeout: float = NFT_TIMEOUT
) -> tuple[int, str, str]:
    """Run ``nft args`` (feeding ``stdin``) without blocking the loop; (status, out, err)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except FileNotFoundError:
        raise _not_installed(binary) from None
    try:
        async with asyncio.timeout(timeout):
            out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
    except TimeoutError:
        raise AgentError(f"{binary} {' '.join(args)} timed out after {timeout:g}s") from None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace").strip()


async def apply_ruleset(script: str, what: str, *, binary: str = NFT) -> None:
    """Apply ``script`` as one transaction; refused, it fails naming ``what``."""
    code, _, err = await run_nft("-f", "-", stdin=script, binary=binary)
    if code != 0:
        raise AgentError(f"nft refused the {what} ruleset: {err}")


async def list_table(family: str, table: str, *, binary: str = NFT) -> str:
    """``nft list table`` as text, or "" when the table does not exist."""
    code, out, _ = await run_nft("list", "table", family, table, binary=binary)
    return out if code == 0 else ""


async def list_table_json(family: str, table: str, *, binary: str = NFT) -> list[dict[str, Any]]:
    """The ``nftables`` items of ``nft -j list table`` ([] when it does not exist)."""
    code, out, _ = await run_nft("-j", "list", "table", family, table, binary=binary)
    if code != 0:
        return []
    items: list[dict[str, Any]] = json.loads(out).get("nftables", [])
    return items
