"""Logging of the processes that host a node: a file in the data dir, and stderr if wanted.

The TUI owns the terminal, so its node must never log to stderr; zcli shows
warnings there.  Both write ``<data_dir>/management-node.log`` at the level of
the ``core.log_level`` property.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler

from core.kernel.node import prepare_data_dir
from core.kernel.properties import Properties, PropertyError

LOG_NAME = "management-node.log"
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(props: Properties, stderr_level: int | None = None) -> None:
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
    log_file = props.data_dir / LOG_NAME
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
