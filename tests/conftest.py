"""Shared fixtures: a temp config.toml, its properties, and a real management node on it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from core.kernel import properties
from core.kernel.extensions import ExtensionRegistry
from core.kernel.node import ManagementNode
from core.kernel.properties import Properties

# The session fails if it leaves a process, link, namespace, nft table, domain or file of
# the project behind (tests/host_leaks.py); pytester runs inner sessions for its own test;
# tests.service_lab gives the node-service fixtures; under make test no test may skip
# (tests/no_skips.py).
pytest_plugins = ["tests.service_lab", "tests.host_leaks", "tests.no_skips", "pytester"]


def write_config(directory: Path, body: str = "", data_dir: str | Path = "data") -> Path:
    """A config.toml in ``directory`` whose data dir is ``data_dir`` (relative to it)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "config.toml"
    path.write_text(f'[core]\ndata_dir = "{data_dir}"\n{body}')
    return path


def load_props(path: Path, env: Mapping[str, str] | None = None) -> Properties:
    return properties.load(path, env=dict(env or {}))


def core_plugins() -> dict[str, type]:
    """The plugin classes installed through entry points (the real core)."""
    return ExtensionRegistry().discover(["*"], [])


def make_node(
    props: Properties, extra: Mapping[str, type] | None = None, **kw: Any
) -> ManagementNode:
    """A node with the installed plugins plus ``extra`` (test plugins, by name)."""
    if not extra:
        return ManagementNode(props, **kw)
    return ManagementNode(props, plugin_classes={**core_plugins(), **extra}, **kw)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return write_config(tmp_path)


@pytest.fixture
def props(config_file: Path) -> Properties:
    loaded = load_props(config_file)
    assert loaded.data_dir == config_file.parent / "data"
    return loaded


@pytest.fixture
async def node(props: Properties) -> AsyncIterator[ManagementNode]:
    n = ManagementNode(props)
    await n.start()
    try:
        yield n
    finally:
        await n.stop()


async def ok(node: ManagementNode, api: str, **params: Any) -> Any:
    """Call ``api`` and insist it succeeds; the inventory (or inventories) it answered."""
    reply = await node.call(api, params)
    assert reply.success, f"{api} failed: {reply.error}"
    return reply.inventory if reply.inventories is None else reply.inventories


async def fails(node: ManagementNode, api: str, code: str, **params: Any) -> str:
    """Call ``api`` and insist it fails with ``code``; the error's description."""
    reply = await node.call(api, params)
    assert not reply.success, f"{api} unexpectedly succeeded: {reply.to_dict()}"
    assert reply.error is not None
    assert reply.error.code == code, str(reply.error)
    return reply.error.description


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A temporary directory with a short path: a Unix socket's path must fit sun_path
    (108 bytes), and pytest's tmp dirs are long."""
    path = Path(tempfile.mkdtemp(prefix="zsl-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
