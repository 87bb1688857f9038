"""zcli's replies for people: a table of inventories, or YAML (standard library only).

JSON, the default when stdout is not a terminal, is the node's own text and is not
made here.  A table shows a page of inventories with a few columns chosen for their
kind (``Query<Kind>``: name, uuid, state or status and the kind's key fields), or the
first that fit for replies of unknown kind; a single inventory and anything else
(``total`` of ``count=true``) is shown as a list of fields, one a line.
"""

from __future__ import annotations

import json
import re
import shutil
from typing import Any

LEAD = ("name", "uuid", "state", "status")
COLUMNS: dict[str, tuple[str, ...]] = {
    "Zone": LEAD,
    "VmInstance": (*LEAD, "cpuNum", "memorySize", "hostUuid"),
    "Host": (*LEAD, "managementIp", "cpuNum", "availableMemoryCapacity"),
    "Image": (*LEAD, "format", "size", "url"),
    "InstanceOffering": (*LEAD, "cpuNum", "memorySize"),
    "Cluster": (*LEAD, "hypervisorType"),
    "L2Network": (*LEAD, "type", "bridgeName", "physicalInterface"),
    "L3Network": (*LEAD, "category", "dnsDomain"),
    "IpRange": (*LEAD, "networkCidr", "startIp", "endIp", "gateway"),
    "VmNic": (*LEAD, "ip", "mac", "vmInstanceUuid"),
    "VirtualRouterVm": (*LEAD, "guestNetworkUuid", "namespace"),
    "BackupStorage": (*LEAD, "type", "availableCapacity", "url"),
    "PrimaryStorage": (*LEAD, "type", "availableCapacity", "url"),
    "NetworkServiceProvider": (*LEAD, "type", "networkServiceTypes"),
    "ManagementNode": (*LEAD, "hostName", "pid", "started"),
    "GlobalConfig": ("category", "name", "value", "defaultValue"),
    "SystemTag": ("uuid", "resourceType", "resourceUuid", "tag"),
    "UserTag": ("uuid", "resourceType", "resourceUuid", "tag"),
    "OperationLog": ("createDate", "apiName", "status", "resourceUuid", "uuid"),
}
"""The columns of a ``Query<Kind>`` table, those the inventories have, in this order."""
QUIET = {"description", "createDate", "lastOpDate"}
"""Left out of the tables of other kinds (they are in ``--output yaml``)."""
BYTES = re.compile(
    r"memorySize|size|actualSize|totalPhysicalMemory|(total|available)(?!Cpu)\w*Capacity"
)
"""Fields counted in bytes, shown as 256M, 8G (not the CPU capacities)."""
MAX_CELL = 48


def render_table(api: str, reply: dict[str, Any]) -> str:
    """The reply of ``api`` as a table (its inventories) or as fields (anything else)."""
    rest = {k: v for k, v in reply.items() if k not in ("success", "inventories")}
    rows = reply.get("inventories")
    if not isinstance(rows, list):
        shown = rest["inventory"] if set(rest) == {"inventory"} else rest
        return fields(shown) if isinstance(shown, dict) and shown else ""
    rows = [r for r in rows if isinstance(r, dict)]
    if not rows:  # none matched, or count=true: its total says so
        return fields(rest) if rest else "(none)\n"
    text = table(rows, columns_for(api.removeprefix("Query"), rows))
    return text + (fields(rest) if rest else "")


def fields(data: dict[str, Any]) -> str:
    """One field a line, the leading ones first; nested values as YAML under their name."""
    keys = [k for k in LEAD if k in data] + [k for k in data if k not in LEAD]
    width = max(len(k) for k in keys)
    lines = []
    for key in keys:
        value = data[key]
        if isinstance(value, dict | list) and value and not _flat_list(value):
            lines.append(f"{key}:")
            lines += ["  " + line for line in _lines(value, 0)]
        else:
            lines.append(f"{key:<{width}}  {cell(key, value, limit=None)}".rstrip())
    return "\n".join(lines) + "\n"


def _flat_list(value: Any) -> bool:
    return isinstance(value, list) and not any(isinstance(v, dict | list) for v in value)


def columns_for(kind: str, rows: list[dict[str, Any]]) -> list[str]:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    if kind in COLUMNS:
        wanted = [c for c in COLUMNS[kind] if c in fields]
    else:
        scalar = [f for f in fields if all(not isinstance(r.get(f), dict | list) for r in rows)]
        wanted = [f for f in LEAD if f in fields]
        wanted += [f for f in scalar if f not in wanted and f not in QUIET]
    return wanted or fields[:1]


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    """Left-aligned columns, as many as fit the terminal's width (two at least)."""
    cells = [[cell(c, row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    room, shown = shutil.get_terminal_size().columns, 0
    used = -2
    for width in widths:
        used += width + 2
        if used > room and shown >= 2:
            break
        shown += 1
    lines = [
        "  ".join(text.ljust(w) for text, w in zip(line[:shown], widths, strict=False)).rstrip()
        for line in [columns, *cells]
    ]
    return "\n".join(lines) + "\n"


def cell(column: str, value: Any, limit: int | None = MAX_CELL) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int) and BYTES.fullmatch(column):
        text = size(value)
    elif isinstance(value, float):
        text = f"{value:.3f}"
    elif isinstance(value, list):
        text = ",".join(cell(column, v, limit) for v in value) or "-"
    elif isinstance(value, dict):
        text = json.dumps(value, separators=(",", ":"))
    else:
        text = str(value)
        if re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+", text):
            text = text.replace("T", " ").partition(".")[0]  # a date, to the second
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "…"


def size(n: int) -> str:
    """Bytes as 512, 256M, 79.1G (powers of 1024)."""
    value = float(n)
    for unit in ("", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            break
        value /= 1024
    return f"{value:.1f}".removesuffix(".0") + unit


# -- YAML -----------------------------------------------------------------

_PLAIN = re.compile(r"[A-Za-z_/][\w./@+:()-]*(?: [\w./@+:()-]+)*")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def to_yaml(data: Any) -> str:
    """JSON-like data as block YAML that any YAML parser reads back as the same data
    (strings are plain when unambiguous, else JSON-quoted, which is valid YAML)."""
    return "\n".join(_lines(data, 0)) + "\n"


def _lines(data: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(data, dict) and data:
        out = []
        for key, value in data.items():
            head = f"{pad}{scalar(str(key))}:"
            if _nested(value):
                out.append(head)
                out += _lines(value, indent + (0 if isinstance(value, list) else 2))
            else:
                out.append(f"{head} {scalar(value)}")
        return out
    if isinstance(data, list) and data:
        out = []
        for item in data:
            if _nested(item):
                first, *more = _lines(item, indent + 2)
                out.append(f"{pad}- {first[indent + 2 :]}")
                out += more
            else:
                out.append(f"{pad}- {scalar(item)}")
        return out
    return [pad + scalar(data)]


def _nested(value: Any) -> bool:
    return isinstance(value, dict | list) and bool(value)


def scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, dict | list):
        return "{}" if isinstance(value, dict) else "[]"  # empty: others are blocks
    text = str(value)
    plain = _PLAIN.fullmatch(text) and not text.endswith(":") and ": " not in text
    if plain and text.lower() not in _RESERVED:
        return text
    return json.dumps(text, ensure_ascii=False)
