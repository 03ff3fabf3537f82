"""Clocks. Timers and pacers take a `Clock` so tests run on virtual time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` (a plain function, on the event loop) after `delay` seconds."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return asyncio.get_running_loop().call_later(max(0.0, delay), callback)


class _VirtualTimer:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """A clock that only moves when a test calls `advance`. Timers fire in due order."""

    def __init__(self, start: datetime | None = None) -> None:
        self._t = 0.0
        self._epoch = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._heap: list[tuple[float, int, _VirtualTimer, Callable[[], None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._t

    def now(self) -> datetime:
        return self._epoch + timedelta(seconds=self._t)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = _VirtualTimer()
        heapq.heappush(self._heap, (self._t + max(0.0, delay), next(self._seq), handle, callback))
        return handle

    def advance(self, seconds: float) -> None:
        """Move time forward, firing every timer that falls due on the way."""
        target = self._t + seconds
        while self._heap and self._heap[0][0] <= target:
            due, _, handle, callback = heapq.heappop(self._heap)
            self._t = max(self._t, due)
            if not handle.cancelled:
                callback()
        self._t = target

    @property
    def pending(self) -> int:
        return sum(1 for _, _, h, _ in self._heap if not h.cancelled)
