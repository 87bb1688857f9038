"""Global properties: the settings read once at start (ZStack's ``zstack.properties``).

They come from ``config.toml`` (tables become dotted keys: ``[core] data_dir``
is ``core.data_dir``), and an environment variable overrides each one:
``ZSTACK_LITE_`` followed by the key in upper case with dots as underscores,
e.g. ``ZSTACK_LITE_CORE_DATA_DIR``.  Lists are written comma-separated in the
environment.  The config file itself is chosen by ``--config PATH`` or
``ZSTACK_LITE_CONFIG``; without either, the ``config.toml`` at the repository
root is used.

An unknown key (in the file or the environment), a value of the wrong type or
a missing required key stops start-up with :class:`PropertyError` naming it.
Run-time settings that users change while the node runs are global *configs*
(``core.config``), not properties.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

ENV_PREFIX = "ZSTACK_LITE_"
CONFIG_ENV = "ZSTACK_LITE_CONFIG"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config.toml"

_REQUIRED = object()


class PropertyError(ValueError):
    """A global property is unknown, missing or of the wrong type."""


class Property(NamedTuple):  # not a dataclass: clients import this module, and fast
    key: str
    type: type
    """One of str, int, float, bool, Path, list (of str) or dict (a table, kept as read)."""
    default: Any = _REQUIRED
    description: str = ""

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @property
    def env_name(self) -> str:
        return ENV_PREFIX + self.key.upper().replace(".", "_")


# Every property of the core, agents and UI.  A plugin adds its own with define().
_DEFINITIONS: dict[str, Property] = {}


def define(key: str, type_: type, default: Any = _REQUIRED, description: str = "") -> Property:
    prop = Property(key, type_, default, description)
    clash = next((p for p in _DEFINITIONS.values() if p.env_name == prop.env_name), None)
    if clash is not None and clash.key != key:
        raise PropertyError(f"properties {clash.key} and {key} share env name {prop.env_name}")
    _DEFINITIONS[key] = prop
    return prop


def definitions() -> dict[str, Property]:
    return dict(_DEFINITIONS)


define(
    "core.data_dir",
    Path,
    Path("/var/lib/zstack-lite"),
    "directory that holds the database, the node lock, its socket and logs",
)
define(
    "core.db_url",
    str,
    "",
    "SQLAlchemy URL of the database; empty means SQLite (WAL) at <data_dir>/zstack.db",
)
define("core.log_level", str, "INFO", "log level of the management node")
define("api.timeout", float, 300.0, "seconds an API call may take before it times out")
define(
    "rest.host", str, "127.0.0.1", "address the node listens on for agents' callbacks and reports"
)
define("rest.port", int, 0, "port of that endpoint; 0 picks a free one at each start")
define(
    "bootstrap.local_host",
    str,
    "none",
    "at first start, add this machine as a host: kvm, simulator or none",
)
define(
    "bootstrap.image",
    Path,
    None,
    "at first start, add this image file (through AddImage) for the lab's first VMs; "
    "unset: none, a missing file: none until a start finds it",
)
define(
    "agent.port",
    int,
    0,
    "port of the local KVM host agent the node starts; 0: a free port chosen when the host "
    "is added (and kept), so labs on one machine never share one",
)
define("plugins.enabled", list, ["*"], "plugins (entry-point names) to load; '*' loads all")
define("plugins.disabled", list, [], "plugins not to load even when installed")
define("chains", dict, {}, "flow chains declared as ordered lists of dotted class paths")


class Properties:
    """Typed, validated global properties; read with ``props["core.data_dir"]``."""

    def __init__(self, values: Mapping[str, Any], source: Path | None = None) -> None:
        self._values = dict(values)
        self.source = source

    def __getitem__(self, key: str) -> Any:
        if key not in self._values:
            raise PropertyError(f"no global property {key}")
        return self._values[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._values.get(key, default)

    def as_dict(self) -> dict[str, Any]:
        return dict(self._values)

    @property
    def data_dir(self) -> Path:
        return self["core.data_dir"]

    @property
    def db_url(self) -> str:
        return self["core.db_url"] or f"sqlite:///{self.data_dir / 'zstack.db'}"


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    """The ``--config PATH`` option every entry point takes."""
    parser.add_argument(
        "--config",
        metavar="PATH",
        help=f"config.toml to use (default: ${CONFIG_ENV} or {DEFAULT_CONFIG})",
    )


def config_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The config file to read: ``--config``, else ``$ZSTACK_LITE_CONFIG``, else the default."""
    if explicit:
        return Path(explicit)
    if os.environ.get(CONFIG_ENV):
        return Path(os.environ[CONFIG_ENV])
    return DEFAULT_CONFIG


def load(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Properties:
    """Read, override and validate every property; raise PropertyError on any problem."""
    env = os.environ if env is None else env
    file = config_path(path)
    try:
        raw = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise PropertyError(f"config file {file} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise PropertyError(f"config file {file} is not valid TOML: {exc}") from None

    defs = definitions()
    found = _flatten(raw, defs)
    for key in found:
        if key not in defs:
            raise PropertyError(f"unknown global property {key} in {file}")

    by_env = {p.env_name: p for p in defs.values()}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        prop = by_env.get(name)
        if prop is None:
            raise PropertyError(f"unknown environment variable {name}: no such global property")
        found[prop.key] = _from_env(prop, text)
    found.update(overrides or {})

    values: dict[str, Any] = {}
    for key, prop in defs.items():
        if key in found:
            values[key] = _coerce(prop, found[key], file)
        elif prop.required:
            raise PropertyError(f"required global property {key} is missing from {file}")
        else:
            values[key] = prop.default
    return Properties(values, file)


def _flatten(raw: Mapping[str, Any], defs: Mapping[str, Property], prefix: str = "") -> dict:
    """Nested TOML tables to dotted keys, stopping at properties whose type is a table."""
    out: dict[str, Any] = {}
    for name, value in raw.items():
        key = f"{prefix}{name}"
        prop = defs.get(key)
        if isinstance(value, dict) and (prop is None or prop.type is not dict):
            out.update(_flatten(value, defs, key + "."))
        else:
            out[key] = value
    return out


def _from_env(prop: Property, text: str) -> Any:
    if prop.type is list:
        return [item.strip() for item in text.split(",") if item.strip()]
    if prop.type is dict:
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise PropertyError(f"{prop.env_name} is not a TOML table: {exc}") from None
    if prop.type is bool:
        low = text.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise PropertyError(f"{prop.env_name}={text!r} is not a boolean (true/false)")
    return text


def _coerce(prop: Property, value: Any, file: Path) -> Any:
    t = prop.type
    numeric = {int: int | str, float: int | float | str}
    try:
        if t in numeric and isinstance(value, numeric[t]) and not isinstance(value, bool):
            return t(value)
        if t is Path and isinstance(value, str | Path) and str(value):
            path = Path(value).expanduser()
            return path if path.is_absolute() else (file.parent / path).resolve()
        if t is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return list(value)
        if t in (bool, dict, str) and isinstance(value, t):
            return dict(value) if t is dict else value
    except (TypeError, ValueError):
        pass
    raise PropertyError(f"global property {prop.key} must be {_type_name(t)}, got {value!r}")


def _type_name(t: type) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        Path: "a path",
        list: "a list of strings",
        dict: "a table",
    }.get(t, t.__name__)
