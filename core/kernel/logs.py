"""Logging to a file in the data dir, and to stderr if wanted.

The node writes ``<data_dir>/management-node.log`` (and stderr when it runs in
the foreground); the TUI owns the terminal, so it writes ``ztui.log`` only.
Both at the level of the ``core.log_level`` property.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

from core.kernel.data_dir import LOG_NAME, prepare_data_dir
from core.kernel.properties import Properties, PropertyError

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(
    props: Properties, stderr_level: int | None = None, log_name: str = LOG_NAME
) -> None:
    """Log to ``<data_dir>/<log_name>`` (the node's log by default), and to stderr from
    ``stderr_level`` on if given."""
    level = logging.getLevelName(str(props["core.log_level"]).upper())
    if not isinstance(level, int):
        raise PropertyError(
            f"global property core.log_level must be DEBUG, INFO, WARNING or ERROR, "
            f"got {props['core.log_level']!r}"
        )
    root = logging.getLogger()
    root.setLevel(min(level, stderr_level or level))
    for handler in list(root.handlers):
        root.removeHandler(handler)
    prepare_data_dir(props.data_dir)
    log_file = props.data_dir / log_name
    log_file.touch(mode=0o600, exist_ok=True)
    to_file = RotatingFileHandler(log_file, maxBytes=10 << 20, backupCount=3)
    to_file.setLevel(level)
    to_file.setFormatter(logging.Formatter(FORMAT))
    root.addHandler(to_file)
    if stderr_level is not None:
        to_stderr = logging.StreamHandler()
        to_stderr.setLevel(stderr_level)
        to_stderr.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(to_stderr)
