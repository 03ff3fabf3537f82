"""The user's microphone on its way to an engine: a bounded push→pull bridge.

`MicStream.push(pcm, rate)` takes int16 mono audio at any rate and never blocks: the queue holds
at most `queue_seconds` of it, and the oldest audio is dropped beyond that. `run(send)` is the
sender task's body: it resamples what was pushed to the target rate, cuts it into exact chunks
(20 ms by default) and awaits `send(chunk)` for each, the moment it is pushed.

With `pad_silence`, the stream stays continuous: when no user audio has been pushed for `grace`
seconds, what the resampler and the chunker still hold goes out first, then chunks of silence
paced at real time on the injected clock (at most `catchup` late ones at once), until user audio
is pushed again. Without it the sender simply waits for the next push.

Exceptions from `send` (a closed socket) end `run`; its owner decides what they mean.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np

from facecast.clock import Clock, SystemClock
from facecast.media.audio import MIC_RESAMPLE_QUALITY, SAMPLE_RATE, Chunker, Resampler

logger = logging.getLogger(__name__)

Send = Callable[[np.ndarray], Awaitable[None]]


class MicStream:
    def __init__(self, *, rate: int = SAMPLE_RATE, chunk_seconds: float = 0.02,
                 queue_seconds: float = 1.0, pad_silence: bool = False, grace: float = 0.2,
                 catchup: int = 5, clock: Clock | None = None,
                 log: logging.Logger | logging.LoggerAdapter[Any] = logger) -> None:
        self.rate = rate
        self.chunk_samples = round(rate * chunk_seconds)
        self.chunk_seconds = self.chunk_samples / rate
        self.queue_seconds = queue_seconds
        self.pad_silence = pad_silence
        self.grace = grace
        self.catchup = catchup
        self._clock: Clock = clock or SystemClock()
        self._log = log
        self._queue: deque[tuple[np.ndarray, int]] = deque()
        self._queued_seconds = 0.0
        self._ready = asyncio.Event()
        self._last_push: float | None = None     # clock time of the last push
        self._resampler: Resampler | None = None
        self._chunker = Chunker(self.chunk_samples)
        # counters (for logs and benchmarks)
        self.chunks_sent = 0                      # every chunk sent, silence included
        self.silence_chunks_sent = 0              # of which padding
        self.dropped = 0                          # pushes dropped from a full queue

    def push(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue user audio (int16 mono). Never blocks; drops the oldest audio when full."""
        if pcm.size == 0:
            return
        if pcm.dtype != np.int16:
            raise TypeError(f"expected int16 PCM, got {pcm.dtype}")
        if sample_rate <= 0:
            raise ValueError(f"invalid sample rate {sample_rate}")
        self._queue.append((pcm.reshape(-1).copy(), sample_rate))
        self._last_push = self._clock.monotonic()
        self._queued_seconds += pcm.size / sample_rate
        while self._queued_seconds > self.queue_seconds + 1e-9 and len(self._queue) > 1:
            old, rate = self._queue.popleft()
            self._queued_seconds -= old.size / rate
            self.dropped += 1
            self._log.debug("mic queue full: dropped %d ms of user audio (%d so far)",
                            old.size * 1000 // rate, self.dropped)
        self._ready.set()

    def clear(self) -> None:
        """Drop the queued user audio."""
        self._queue.clear()
        self._queued_seconds = 0.0

    async def run(self, send: Send) -> None:
        """Send the pushed audio (and, with `pad_silence`, silence in its gaps) until cancelled."""
        clock = self._clock
        if self._last_push is None:
            self._last_push = clock.monotonic()
        pad_next: float | None = None      # when the next silence chunk is due; None: not padding
        while True:
            if self._queue:
                pad_next = None
                await self._send_queued(send)
                continue
            if not self.pad_silence:
                await self._wait(None)
                continue
            now = clock.monotonic()
            if pad_next is None and now >= self._last_push + self.grace:
                # the user audio stopped: out with what the resampler and chunker hold, then
                # silence from now on (no burst for the grace period itself)
                await self._send_pcm(send, self._flush_resampler())
                pad_next = now
            if pad_next is not None:
                pad_next = max(pad_next, now - (self.catchup - 1) * self.chunk_seconds)
                while pad_next <= now and not self._queue:
                    self.silence_chunks_sent += await self._send_pcm(
                        send, np.zeros(self.chunk_samples, dtype=np.int16))
                    pad_next += self.chunk_seconds
                due = pad_next
            else:
                due = self._last_push + self.grace
            await self._wait(due)

    async def _send_queued(self, send: Send) -> None:
        while self._queue:
            pcm, rate = self._queue.popleft()
            self._queued_seconds = max(0.0, self._queued_seconds - pcm.size / rate)
            await self._send_pcm(send, self._resample(pcm, rate))

    async def _send_pcm(self, send: Send, pcm: np.ndarray) -> int:
        """Cut target-rate audio into chunks and send the whole ones; returns how many."""
        chunks = self._chunker.push(pcm)
        for chunk in chunks:
            await send(chunk)
            self.chunks_sent += 1
        return len(chunks)

    async def _wait(self, due: float | None) -> None:
        """Until user audio is pushed or the clock reaches `due` (None: no deadline)."""
        if self._queue:
            return
        if due is None:
            self._ready.clear()
            await self._ready.wait()
            return
        delay = due - self._clock.monotonic()
        if delay <= 0:
            return
        self._ready.clear()
        handle = self._clock.call_later(delay, self._ready.set)
        try:
            await self._ready.wait()
        finally:
            handle.cancel()

    def _flush_resampler(self) -> np.ndarray:
        """The samples the resampler still holds; it starts afresh with the next user audio."""
        if self._resampler is None:
            return np.zeros(0, dtype=np.int16)
        tail = self._resampler.process(np.zeros(0, dtype=np.int16), last=True)
        self._resampler.reset()
        return tail

    def _resample(self, pcm: np.ndarray, rate: int) -> np.ndarray:
        if self._resampler is None or self._resampler.in_rate != rate:
            if self._resampler is not None:
                self._log.info("mic sample rate changed %d → %d Hz", self._resampler.in_rate, rate)
            self._resampler = Resampler(rate, self.rate, quality=MIC_RESAMPLE_QUALITY)
        return self._resampler.process(pcm)
