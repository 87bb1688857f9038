"""The agent's bearer token: one secret in ``<data_dir>/agent.token`` (mode 0600).

The core reads the same file for a local agent, so the token is made once, at the
agent's first start, and kept across restarts.
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import stat
from pathlib import Path

from agent.protocol import TOKEN_FILE

log = logging.getLogger(__name__)


def load_or_create_token(data_dir: Path) -> str:
    path = data_dir / TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            log.warning("%s was mode %o; making it 0600", path, mode)
            path.chmod(0o600)
        token = path.read_text().strip()
        if not token:
            raise RuntimeError(f"{path} is empty; delete it to make a new token") from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    log.info("created the agent token %s", path)
    return token


def bearer_matches(authorization: str, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token`` (compared in constant time)."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
