"""The agent-speech playout buffer: bounded, segment-aware, clearable at once.

Engines write agent speech (int16 mono, 24 kHz) as fast as it arrives; the media clock reads
exactly one video frame's worth of samples per tick. Segments are the unit the SDK and engines
talk about ("the avatar is speaking segment X"):

- *auto* mode (Cartesia): a segment opens on the first chunk written after silence and ends
  when the buffer has drained (after `drain_grace_reads` empty reads, to ride over jitter).
- *explicit* mode (external engine): the engine opens and closes segments; audio written with
  no open segment is refused with `NoOpenSegment`; a segment ends once closed and drained.

`clear()` (barge-in) drops every buffered sample at once and ends the playing segment as
interrupted. Playback events are delivered synchronously to the subscribers, on the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from facecast.media.audio import SAMPLE_RATE

log = logging.getLogger(__name__)

_ids = itertools.count(1)


class NoOpenSegment(Exception):
    """Audio arrived in explicit mode while no segment was open."""


@dataclass(eq=False)
class Segment:
    id: str
    uid: str | None = None
    written: int = 0          # samples accepted into the buffer
    played: int = 0           # samples handed to the media clock
    closed: bool = False      # no more audio will be written to it
    started: bool = False
    ended: bool = False
    interrupted: bool = False
    _cleared: int = field(default=0, repr=False)

    @property
    def played_duration(self) -> float:
        return self.played / SAMPLE_RATE


@dataclass(frozen=True)
class PlaybackEvent:
    kind: Literal["started", "ended"]
    segment: Segment
    interrupted: bool = False
    played_samples: int = 0

    @property
    def played_duration(self) -> float:
        return self.played_samples / SAMPLE_RATE


PlaybackListener = Callable[[PlaybackEvent], None]


@dataclass(frozen=True)
class ReadResult:
    pcm: np.ndarray          # exactly the requested number of samples (zero-padded)
    speech_samples: int      # how many of them were agent speech
    segment: Segment | None  # the segment the speech belonged to (the last one, if several)


class SpeechBuffer:
    def __init__(self, *, mode: Literal["auto", "explicit"] = "auto",
                 capacity_seconds: float = 120.0, drain_grace_reads: int = 0) -> None:
        self.mode = mode
        self.capacity = int(capacity_seconds * SAMPLE_RATE)
        self.drain_grace_reads = drain_grace_reads
        self._chunks: deque[tuple[Segment, np.ndarray]] = deque()
        self._head_offset = 0
        self._buffered = 0
        self._writing: Segment | None = None    # segment new audio goes to
        self._playing: Segment | None = None    # segment whose audio was read last
        self._empty_reads = 0
        self._generation = 0                    # bumped by clear(): stale writers drop their audio
        self._space = asyncio.Event()
        self._space.set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._listeners: list[PlaybackListener] = []
        self._downstream_flush: Callable[[], int] | None = None

    # -- subscribers -----------------------------------------------------------------------
    def subscribe(self, listener: PlaybackListener) -> None:
        self._listeners.append(listener)

    def _emit(self, event: PlaybackEvent) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not stop playback
                log.exception("playback listener failed")

    def set_downstream_flush(self, flush: Callable[[], int] | None) -> None:
        """Register the media path's flush: called first thing in `clear()`, it drops every
        sample already read but not yet played and returns how many it dropped."""
        self._downstream_flush = flush

    # -- state -----------------------------------------------------------------------------
    @property
    def buffered_samples(self) -> int:
        return self._buffered

    @property
    def open_segment(self) -> Segment | None:
        w = self._writing
        return w if w is not None and not w.closed else None

    @property
    def playing(self) -> Segment | None:
        return self._playing

    def is_idle(self) -> bool:
        return self._buffered == 0 and self._playing is None and self.open_segment is None

    async def wait_idle(self) -> None:
        """Wait until every written sample has been read and no segment is open or playing."""
        while not self.is_idle():
            self._idle.clear()
            await self._idle.wait()

    def _update_idle(self) -> None:
        if self.is_idle():
            self._idle.set()
        else:
            self._idle.clear()

    # -- writer side -----------------------------------------------------------------------
    def open(self, uid: str | None = None) -> Segment:
        """Open a segment explicitly (closing any open one first)."""
        if self.open_segment is not None:
            self.close()
        seg = Segment(id=f"seg_{next(_ids)}", uid=uid)
        self._writing = seg
        self._update_idle()
        return seg

    def close(self) -> Segment | None:
        """No more audio for the open segment; it ends once its audio has played."""
        seg = self.open_segment
        if seg is None:
            return None
        seg.closed = True
        if seg.written == seg.played + seg._cleared and seg is not self._playing:
            # nothing of it is buffered: it ends now (an empty or fully played segment)
            self._end(seg, interrupted=False)
        self._update_idle()
        return seg

    def write_nowait(self, pcm: np.ndarray) -> Segment:
        """Append speech. Raises `NoOpenSegment` in explicit mode without an open segment."""
        seg = self.open_segment
        if seg is None:
            if self.mode == "explicit":
                raise NoOpenSegment("audio received outside a segment")
            seg = self.open()
        if pcm.size:
            self._chunks.append((seg, pcm))
            self._buffered += pcm.size
            seg.written += pcm.size
            if self._buffered >= self.capacity:
                self._space.clear()
        self._update_idle()
        return seg

    def has_space(self, samples: int) -> bool:
        return self._buffered + samples <= self.capacity or self._buffered == 0

    async def write(self, pcm: np.ndarray) -> Segment | None:
        """Append speech, waiting while the buffer is full (backpressure on the engine socket).

        Returns None when a `clear()` happened while waiting: the audio belonged to the
        cleared reply and is dropped.
        """
        generation = self._generation
        while not self.has_space(pcm.size):
            self._space.clear()
            await self._space.wait()
            if self._generation != generation:
                return None
        return self.write_nowait(pcm)

    def clear(self, unplayed_downstream: int = 0) -> Segment | None:
        """Barge-in: drop every buffered sample now; end the playing segment as interrupted.

        `unplayed_downstream` is how many samples of the playing segment the caller dropped
        from its own buffers after reading them, so `played` counts what really played.
        Returns the interrupted segment, if one was playing or open.
        """
        self._generation += 1
        if self._downstream_flush is not None:
            unplayed_downstream += self._downstream_flush()
        pending = [seg for seg, _ in self._chunks]
        self._chunks.clear()
        self._head_offset = 0
        self._buffered = 0
        self._empty_reads = 0
        self._space.set()
        interrupted: Segment | None = None
        seen: set[int] = set()
        for seg in [self._playing, *pending, self._writing]:
            if seg is None or seg.ended or id(seg) in seen:
                continue
            seen.add(id(seg))
            if seg is self._playing and unplayed_downstream:
                seg.played = max(0, seg.played - unplayed_downstream)
            seg._cleared = seg.written - seg.played
            seg.closed = True
            self._end(seg, interrupted=True)
            interrupted = interrupted or seg
        self._playing = None
        self._writing = None
        self._update_idle()
        return interrupted

    # -- reader side (the media clock) -----------------------------------------------------
    def peek(self, n: int) -> np.ndarray:
        """Up to `n` buffered samples after the read position, without consuming them."""
        parts: list[np.ndarray] = []
        need = n
        offset = self._head_offset
        for _, chunk in self._chunks:
            if need <= 0:
                break
            part = chunk[offset:offset + need]
            parts.append(part)
            need -= part.size
            offset = 0
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def read(self, n: int) -> ReadResult:
        out = np.zeros(n, dtype=np.int16)
        got = 0
        last_seg: Segment | None = None
        while got < n and self._chunks:
            seg, chunk = self._chunks[0]
            if seg is not self._playing:
                if self._playing is not None and not self._playing.ended:
                    # the previous segment's audio is all read: it ended normally
                    self._end(self._playing, interrupted=False)
                self._playing = seg
            if not seg.started:
                seg.started = True
                self._emit(PlaybackEvent("started", seg))
            take = min(n - got, chunk.size - self._head_offset)
            out[got:got + take] = chunk[self._head_offset:self._head_offset + take]
            got += take
            seg.played += take
            self._head_offset += take
            self._buffered -= take
            last_seg = seg
            if self._head_offset >= chunk.size:
                self._chunks.popleft()
                self._head_offset = 0
        if got:
            self._empty_reads = 0
            if not self._space.is_set() and self._buffered < self.capacity:
                self._space.set()
        self._after_read(got)
        self._update_idle()
        return ReadResult(out, got, last_seg)

    def _after_read(self, got: int) -> None:
        seg = self._playing
        if seg is None or self._chunks:
            return
        # the buffer is empty: does the playing segment end?
        if seg.closed:
            if seg.played + seg._cleared >= seg.written:
                self._end(seg, interrupted=False)
                self._playing = None
            return
        if self.mode == "auto":
            if got < 1:
                self._empty_reads += 1
            if self._empty_reads >= self.drain_grace_reads:
                seg.closed = True
                self._end(seg, interrupted=False)
                self._playing = None

    def _end(self, seg: Segment, *, interrupted: bool) -> None:
        if seg.ended:
            return
        seg.ended = True
        seg.closed = True
        seg.interrupted = interrupted
        if seg is self._writing:
            self._writing = None
        self._emit(PlaybackEvent("ended", seg, interrupted=interrupted, played_samples=seg.played))
