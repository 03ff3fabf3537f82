"""Agent speech for the Cartesia stand-in: queued utterances, paced out in chunks.

The player keeps one timeline per run of speech: chunk k is due at
`t0 + (samples_before_k - burst) / rate` (the first `burst` samples go at once), so pacing is
derived from a start time and a sample count and never drifts. After a gap (the client has
played everything) or a `clear`, the next utterance starts a fresh timeline.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facecast.clock import Clock

logger = logging.getLogger(__name__)


async def sleep_until(clock: Clock, when: float) -> None:
    """Sleep until `clock.monotonic() >= when` (works with virtual clocks too)."""
    delay = when - clock.monotonic()
    if delay <= 0:
        await asyncio.sleep(0)
        return
    fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    handle = clock.call_later(delay, lambda: None if fut.done() else fut.set_result(None))
    try:
        await fut
    finally:
        handle.cancel()


@dataclass(eq=False)
class Speech:
    """One queued utterance (int16 at the call's rate). `cancelled`: cut by a barge-in (or the
    call closed) before all of it was sent; `finished`: every sample was sent."""

    pcm: np.ndarray
    interruptible: bool = True
    text: str | None = None
    sent_samples: int = 0
    cancelled: bool = False
    finished: bool = False
    _done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def interrupted(self) -> bool:
        return self.cancelled

    async def wait(self, timeout: float | None = None) -> None:
        """Until fully sent or cut."""
        await asyncio.wait_for(self._done.wait(), timeout)

    def _settle(self, *, cancelled: bool) -> None:
        if cancelled and not self.finished:
            self.cancelled = True
        self._done.set()


@dataclass(eq=False)
class Action:
    """A non-audio step queued behind speech (end_call, transfer_call); `done` when run."""

    kind: str
    arg: str
    done: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future())


class Recording:
    """User audio as received, bounded to the last `max_samples` (whole chunks dropped first);
    positions are absolute sample indices since the call started."""

    def __init__(self, max_samples: int) -> None:
        self.max_samples = max_samples
        self._chunks: deque[np.ndarray] = deque()
        self._offsets: deque[int] = deque()
        self.total = 0

    def append(self, pcm: np.ndarray) -> None:
        self._chunks.append(pcm)
        self._offsets.append(self.total)
        self.total += pcm.size
        while self._chunks and self.total - self._offsets[0] > self.max_samples:
            self._chunks.popleft()
            self._offsets.popleft()

    def all(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)

    def slice(self, start: int, end: int) -> np.ndarray:
        """Samples [start, end) of the stream, as far as they are still kept."""
        offsets = list(self._offsets)
        first = max(0, bisect_right(offsets, max(0, start)) - 1)
        parts = []
        for i in range(first, len(offsets)):
            off, chunk = offsets[i], self._chunks[i]
            if off >= end:
                break
            parts.append(chunk[max(0, start - off):max(0, end - off)])
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


SendAudio = Callable[[Speech, np.ndarray], Awaitable[bool]]
OnAction = Callable[[Any], Awaitable[None]]
OnSpeech = Callable[[Speech | None, str], Awaitable[None]]


class SpeechPlayer:
    """Plays queued `Speech` items and actions (anything else, e.g. end_call) in order."""

    def __init__(self, *, rate: int, chunk_ms: int, burst_ms: int, paced: bool, clock: Clock,
                 send_audio: SendAudio, on_action: OnAction, on_speech: OnSpeech) -> None:
        if not 10 <= chunk_ms <= 200:
            raise ValueError("chunk_ms must be within 10..200")
        self.rate = rate
        self.chunk = max(1, rate * chunk_ms // 1000)
        self.burst = max(0, rate * burst_ms // 1000)
        self.paced = paced
        self.clock = clock
        self._send_audio = send_audio
        self._on_action = on_action
        self._on_speech = on_speech
        # Holds utterances, not media frames: bounded by what a script or persona says.
        self._queue: deque[Any] = deque()
        self._wake = asyncio.Event()
        self._current: Speech | None = None
        self._t0: float | None = None
        self._run_samples = 0
        self._last_interruptible = False
        self.sent_samples = 0

    @property
    def timeline_end(self) -> float:
        """When the client will have played every sample sent so far (if it plays on receipt)."""
        if self._t0 is None:
            return self.clock.monotonic()
        return self._t0 + self._run_samples / self.rate

    def enqueue(self, item: Any) -> None:
        self._queue.append(item)
        self._wake.set()

    def interrupt(self) -> bool:
        """Barge-in: cut the current utterance if interruptible and drop queued interruptible
        ones. True when the client holds interruptible audio it must drop (send `clear`)."""
        current = self._current
        cut_current = current is not None and current.interruptible and not current.finished
        if cut_current:
            assert current is not None
            current.cancelled = True
        for item in list(self._queue):
            if isinstance(item, Speech) and item.interruptible:
                self._queue.remove(item)
                item._settle(cancelled=True)
        playing = self.timeline_end > self.clock.monotonic()
        must_clear = self._last_interruptible and (
            playing or (cut_current and current is not None and current.sent_samples > 0))
        if must_clear and (current is None or cut_current):
            self._t0 = None  # the client's buffer is empty again: start a fresh timeline
            self._run_samples = 0
        return must_clear and (current is None or cut_current)

    def abandon(self) -> None:
        """The call is over: settle everything still queued."""
        if self._current is not None:
            self._current._settle(cancelled=True)
        while self._queue:
            item = self._queue.popleft()
            if isinstance(item, Speech):
                item._settle(cancelled=True)
            elif isinstance(item, Action) and not item.done.done():
                item.done.cancel()

    async def run(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            item = self._queue.popleft()
            if isinstance(item, Speech):
                await self._play(item)
                if not self._queue:
                    await self._on_speech(None, "idle")
            else:
                await sleep_until(self.clock, self.timeline_end)
                await self._on_action(item)

    async def _play(self, item: Speech) -> None:
        self._current = item
        try:
            now = self.clock.monotonic()
            if self._t0 is None or self.timeline_end < now:
                self._t0, self._run_samples = now, 0
            await self._on_speech(item, "started")
            pos, size = 0, item.pcm.size
            while pos < size and not item.cancelled:
                if self.paced and self._t0 is not None:
                    due = self._t0 + (self._run_samples - self.burst) / self.rate
                    if due > self.clock.monotonic():
                        await sleep_until(self.clock, due)
                    if item.cancelled:
                        break
                n = min(self.chunk, size - pos)
                if not await self._send_audio(item, item.pcm[pos:pos + n]):
                    break
                pos += n
                item.sent_samples += n
                self.sent_samples += n
                self._run_samples += n
                self._last_interruptible = item.interruptible
            item.finished = pos >= size
            item._settle(cancelled=not item.finished)
            await self._on_speech(item, "done" if item.finished else "interrupted")
        finally:
            self._current = None
