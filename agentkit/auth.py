"""Bearer tokens of the agents: one secret per file (mode 0600).

The host agent's is ``<data_dir>/agent.token``, a virtual router's is written by the
host agent before it starts the router's agent.  The core reads the same files for
local agents, so a token is made once and kept across restarts.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

log = logging.getLogger(__name__)


def create_token(path: Path) -> bool:
    """Make a token file (a random token, mode 0600) unless one is there; True if this
    call made it.  An empty file (a write cut short) is replaced."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        if path.stat().st_size == 0:
            path.unlink()
            return create_token(path)
        return False
    with os.fdopen(fd, "w") as f:
        f.write(secrets.token_urlsafe(32) + "\n")
    log.info("created the token %s", path)
    return True


def load_or_create_token(path: Path) -> str:
    """The bearer token in ``path`` (made at the first start and kept after), its file
    mode put back to 0600 if someone opened it up."""
    if not create_token(path):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s was mode %o; making it 0600", path, mode)
            path.chmod(0o600)
    return path.read_text().strip()


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
