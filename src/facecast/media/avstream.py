"""The session's media clock: agent speech in, lip-synced audio + video frames out.

One `AvatarStream` per live session. Every 40 ms of wall-clock time it reads exactly one video
frame's worth of speech (960 samples at 24 kHz, silence when the agent is quiet) from the
`SpeechBuffer`, hands it at once to every sink as audio (audio is the master clock), and renders
the matching video frame in a worker thread; frame n carries audio samples [960n, 960n + 960),
so A/V sync holds by construction. If rendering falls behind, video frames are skipped, never
audio. Sinks (one per WebRTC peer, or an MP4 writer) keep small bounded buffers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Protocol

import numpy as np

from facecast.media.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from facecast.media.playout import SpeechBuffer

log = logging.getLogger(__name__)

FRAME_SECONDS = SAMPLES_PER_FRAME / SAMPLE_RATE  # 0.04


class FrameRenderer(Protocol):
    """What `facecast.render.RenderSession` offers (synchronous, one worker thread at a time)."""

    lookahead_frames: int

    def render(self, pcm: np.ndarray, lookahead: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


class AVSink(Protocol):
    """A consumer of the session's media (a WebRTC peer's tracks)."""

    def push_audio(self, index: int, pcm: np.ndarray) -> None:
        """Frame `index`'s 960 samples (int16, 24 kHz). Must not block."""
        ...

    def push_video(self, index: int, image: np.ndarray) -> None:
        """Frame `index`'s picture (uint8 RGB or RGBA). Must not block."""
        ...

    def flush(self) -> int:
        """Drop everything buffered; return the number of audio samples dropped."""
        ...


class AvatarStream:
    def __init__(self, speech: SpeechBuffer, renderer: FrameRenderer, executor: Executor,
                 *, session_id: str = "-", time_fn: Callable[[], float] | None = None) -> None:
        self.speech = speech
        self.renderer = renderer
        self.session_id = session_id
        self._executor = executor
        self._time = time_fn
        self._sinks: list[AVSink] = []
        self._index = 0
        self._render_busy = False
        self._reset_pending = False
        self._flushes = 0
        self._pending_video: set[asyncio.Future[np.ndarray]] = set()
        self.frames_rendered = 0
        self.frames_skipped = 0
        self.last_image: np.ndarray | None = None
        speech.set_downstream_flush(self.flush_downstream)

    @property
    def frame_index(self) -> int:
        return self._index

    def add_sink(self, sink: AVSink) -> None:
        self._sinks.append(sink)
        if self.last_image is not None:
            sink.push_video(self._index, self.last_image)  # a picture right away for a new viewer

    def remove_sink(self, sink: AVSink) -> None:
        if sink in self._sinks:
            self._sinks.remove(sink)

    def flush_downstream(self) -> int:
        """Barge-in: drop what the sinks still hold and restart lip-sync from a closed mouth."""
        dropped = max((sink.flush() for sink in self._sinks), default=0)
        self._reset_pending = True
        self._flushes += 1   # a render already in flight shows the cut reply: drop its picture
        return dropped

    async def run(self) -> None:
        """The paced loop; cancel the task to stop it."""
        loop = asyncio.get_running_loop()
        now = self._time or loop.time
        start = now()
        try:
            while True:
                due = start + self._index * FRAME_SECONDS
                delay = due - now()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif delay < -1.0:
                    # we stalled for over a second (suspended machine): re-anchor, don't burst
                    log.warning("media clock stalled %.2fs, re-anchoring", -delay,
                                extra={"session_id": self.session_id})
                    start = now() - self._index * FRAME_SECONDS
                self.tick()
        finally:
            for fut in self._pending_video:
                fut.cancel()

    def tick(self) -> None:
        """Produce frame `frame_index`: audio now, video when the worker thread has it."""
        index = self._index
        self._index += 1
        result = self.speech.read(SAMPLES_PER_FRAME)
        for sink in self._sinks:
            sink.push_audio(index, result.pcm)
        if self._render_busy:
            self.frames_skipped += 1
            return
        lookahead = self.speech.peek(self.renderer.lookahead_frames * SAMPLES_PER_FRAME)
        reset = self._reset_pending
        self._reset_pending = False
        self._render_busy = True
        fut = asyncio.get_running_loop().run_in_executor(
            self._executor, self._render, result.pcm, lookahead, reset)
        self._pending_video.add(fut)
        fut.add_done_callback(functools.partial(self._rendered, index, self._flushes))

    def _render(self, pcm: np.ndarray, lookahead: np.ndarray, reset: bool) -> np.ndarray:
        if reset:
            self.renderer.reset()
        return self.renderer.render(pcm, lookahead)

    def _rendered(self, index: int, flushes: int, fut: asyncio.Future[np.ndarray]) -> None:
        self._pending_video.discard(fut)
        self._render_busy = False
        if fut.cancelled() or flushes != self._flushes:
            return
        exc = fut.exception()
        if exc is not None:
            log.error("render failed: %r", exc, extra={"session_id": self.session_id})
            return
        image = fut.result()
        self.last_image = image
        self.frames_rendered += 1
        for sink in self._sinks:
            sink.push_video(index, image)
