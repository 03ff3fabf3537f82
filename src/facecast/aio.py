"""Small asyncio helpers shared by the owners of background tasks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any


async def cancel_and_wait(tasks: Sequence[asyncio.Task[Any]], log: logging.Logger | logging.LoggerAdapter[Any],
                          what: str = "task") -> None:
    """Teardown as STYLE.md asks: cancel in reverse start order, then await each one.

    The calling task is skipped (a task may close its own owner). A task that had failed is
    logged, not raised: teardown must reach the end.
    """
    current = asyncio.current_task()
    owned = [t for t in reversed(tasks) if t is not current]
    for task in owned:
        task.cancel()
    for task in owned:
        try:
            await task
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("%s %s failed", what, task.get_name())
