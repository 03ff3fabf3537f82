"""Waiting for a condition in async tests: poll with a deadline (a timeout is a failure, never
a measurement)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(pred: Callable[[], bool], timeout: float = 5.0, what: str = "condition",
                step: float = 0.002) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not pred():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(step)
