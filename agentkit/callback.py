"""Delivery of an asynchronous command's answer to the caller's ``callbackurl``.

Like kvmagent's: POST the answer with the ``taskuuid`` header (and our bearer
token), retrying until the caller answers 2xx, or 404 (it no longer waits), or
the policy's deadline passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    deadline: float = 60.0
    first_delay: float = 0.5
    max_delay: float = 5.0
    attempt_timeout: float = 10.0


class CallbackSender:
    def __init__(
        self, session: aiohttp.ClientSession, token: str, policy: RetryPolicy | None = None
    ) -> None:
        self.session = session
        self.token = token
        self.policy = policy or RetryPolicy()

    async def send(self, url: str, task_uuid: str, answer: dict[str, Any]) -> bool:
        """True once the caller took the answer; False if it stopped waiting or never answered."""
        policy = self.policy
        deadline = time.monotonic() + policy.deadline
        delay = policy.first_delay
        headers = {"taskuuid": task_uuid, "Authorization": f"Bearer {self.token}"}
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            timeout = aiohttp.ClientTimeout(total=max(0.1, min(policy.attempt_timeout, remaining)))
            try:
                async with self.session.post(
                    url, json=answer, headers=headers, timeout=timeout
                ) as resp:
                    if 200 <= resp.status < 300:
                        log.debug("task %s: answer delivered to %s", task_uuid, url)
                        return True
                    if resp.status == 404:
                        log.info("task %s: %s no longer waits (404)", task_uuid, url)
                        return False
                    why = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                why = f"{type(exc).__name__}: {exc}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                log.error(
                    "task %s: giving up on %s after %d attempts (%s)", task_uuid, url, attempt, why
                )
                return False
            log.warning("task %s: callback to %s failed (%s); retrying", task_uuid, url, why)
            await asyncio.sleep(min(delay, remaining))
            delay = min(delay * 2, policy.max_delay)
