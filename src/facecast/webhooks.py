"""Webhooks: lifecycle events POSTed to the product backend (`FACECAST_WEBHOOK_URL`).

Each event (`session.started`, `session.ended` with its reason and billed seconds) is sent as
JSON with an `X-Facecast-Signature: sha256=<hex HMAC of the body>` header when a secret is set,
retried with backoff on errors and non-2xx answers, and given up after the last try (logged).
Delivery runs in one background task behind a bounded queue: if the receiver is down for long,
the oldest undelivered events are dropped with a warning rather than growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
from collections import deque
from typing import Any

import httpx

log = logging.getLogger(__name__)

MAX_PENDING = 1000
RETRY_DELAYS = (1.0, 4.0, 15.0)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, url: str, secret: str | None = None, *, timeout: float = 5.0,
                 retry_delays: tuple[float, ...] = RETRY_DELAYS) -> None:
        self.url = url
        self._secret = secret
        self._timeout = timeout
        self._retry_delays = retry_delays
        self._pending: deque[dict[str, Any]] = deque(maxlen=MAX_PENDING)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self.delivered = 0
        self.failed = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-sender")

    def enqueue(self, event: dict[str, Any]) -> None:
        if len(self._pending) == self._pending.maxlen:
            log.warning("webhook backlog full: dropping the oldest event")
        self._pending.append(event)
        self._idle.clear()
        self._wake.set()

    async def drain(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until every queued event was delivered or given up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._idle.wait()

    async def aclose(self, timeout: float = 5.0) -> None:
        await self.drain(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            while True:
                await self._wake.wait()
                while self._pending:
                    event = self._pending[0]
                    await self._deliver(client, event)
                    if self._pending and self._pending[0] is event:
                        self._pending.popleft()
                self._wake.clear()
                self._idle.set()

    async def _deliver(self, client: httpx.AsyncClient, event: dict[str, Any]) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "facecast-webhooks"}
        if self._secret:
            headers["X-Facecast-Signature"] = sign(self._secret, body)
        for attempt, delay in enumerate((0.0, *self._retry_delays)):
            if delay:
                await asyncio.sleep(delay)
            try:
                response = await client.post(self.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if 200 <= response.status_code < 300:
                    self.delivered += 1
                    return
                problem = f"HTTP {response.status_code}"
            log.warning("webhook %s for %s failed (try %d): %s", event.get("type"),
                        event.get("session_id"), attempt + 1, problem)
        self.failed += 1
        log.error("webhook %s for %s given up", event.get("type"), event.get("session_id"))
