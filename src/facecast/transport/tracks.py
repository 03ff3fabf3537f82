"""The outbound media of one WebRTC peer: a bounded `AVSink` and the two pull-based tracks.

`PeerSink` is registered on the session's `AvatarStream`. The media clock pushes frame n's
960 samples of 24 kHz speech and, a few ms later, frame n's picture. The tracks are what aiortc's
RTP senders pull from:

- `AvatarAudioTrack` yields 20 ms mono s16 frames at 24 kHz, `pts` = sample counter
  (960 n, 960 n + 480); the patched Opus encoder turns that into the RTP timestamp.
- `AvatarVideoTrack` yields frame n with `pts` = n × 3600 at 90 kHz.

Both timelines come from the frame index, so A/V sync holds by construction. The receiver lines
the streams up by RTCP sender reports; `patches.py` stamps those from the sink's media clock
(`PeerSink.media_clock`: frame n ↔ the wall time the media clock produced it, for both tracks),
not from aiortc's send time, so the mapping is exact whatever encoding and pacing cost.

Pacing: the audio track releases each 20 ms chunk at its own media time plus a hold-back equal to
the measured video lag (frame produced → its picture sent; EWMA, capped). So audio and video
reach the browser equally late, Chrome's lip-sync has nothing to add to the audio side, and the
audio that waits does so *here*, where a barge-in can still drop it, instead of in the browser's
jitter buffer. Chunks leave every 20 ms, not in pairs every 40 ms (pairs read as 20 ms of jitter
to Chrome's NetEq, which then buffered ~60 ms).

Buffers are small and drop the oldest entry when full. `flush()` (barge-in) empties the video
buffer and turns every held audio chunk into silence in place: nothing buffered is sent, and the
stream goes on without a gap (no concealment at the browser, no RTP-timeline jump).

Transparent sessions push RGBA images; the video then carries a *stacked matte*: the top half
is the RGB picture, the bottom half the alpha channel as grey (height 2H). The Web SDK
composites it (see docs/webrtc.md).
"""

from __future__ import annotations

import asyncio
import fractions
import logging
import time
from collections import deque
from dataclasses import dataclass

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from facecast.media.audio import SAMPLE_RATE, SAMPLES_PER_FRAME

log = logging.getLogger(__name__)

AUDIO_CHUNK = SAMPLE_RATE // 50             # 20 ms at 24 kHz
AUDIO_TIME_BASE = fractions.Fraction(1, SAMPLE_RATE)
VIDEO_CLOCK = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK)
VIDEO_TICKS_PER_FRAME = VIDEO_CLOCK * SAMPLES_PER_FRAME // SAMPLE_RATE  # 3600
AUDIO_MAX_CHUNKS = 8                         # 160 ms; normally 0-2 are waiting
VIDEO_MAX_FRAMES = 2
FRAME_SECONDS = SAMPLES_PER_FRAME / SAMPLE_RATE   # 0.04
MAX_AV_HOLD_S = 0.08
HOLD_EWMA = 0.1
# Chrome's lip-sync (libwebrtc StreamSynchronization) ignores differences under 30 ms and
# corrects larger ones by half-steps. Its audio path (NetEq + output, 50-90 ms here) is slower
# than its video path (~25 ms), so it always approaches from "audio late" and stops 15-30 ms
# short. Audio sender reports claim each sample 20 ms earlier than the media clock, so that
# correction ends near zero; without it audio plays ~25 ms late (bench/e2e.py).
AUDIO_SR_LEAD_S = 0.020
ANCHOR_FRAMES = 50                           # media-clock anchor: min over the last 2 s of ticks
_SILENCE = np.zeros(AUDIO_CHUNK, np.int16)


def stack_alpha(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 RGBA → 2HxWx3: RGB on top, alpha as grey below (the stacked-matte layout)."""
    h, w = rgba.shape[:2]
    out = np.empty((2 * h, w, 3), dtype=np.uint8)
    out[:h] = rgba[..., :3]
    out[h:] = rgba[..., 3:4]
    return out


@dataclass
class _AudioChunk:
    pts: int              # in 24 kHz samples
    pcm: np.ndarray       # AUDIO_CHUNK int16 samples
    silent: bool = False  # flushed: its speech was replaced by silence


class PeerSink:
    """One peer's bounded buffers between the media clock and the RTP senders."""

    def __init__(self, session_id: str = "-", *, hold_av: bool = True) -> None:
        self.session_id = session_id
        self.hold_av = hold_av
        self._audio: deque[_AudioChunk] = deque(maxlen=AUDIO_MAX_CHUNKS)
        self._video: deque[tuple[int, np.ndarray]] = deque(maxlen=VIDEO_MAX_FRAMES)
        self._audio_ready = asyncio.Event()
        self._video_ready = asyncio.Event()
        self._offsets: deque[float] = deque(maxlen=ANCHOR_FRAMES)
        self._anchor: float | None = None   # monotonic time of media time 0 (frame 0)
        self.video_lag = 0.0                # EWMA: frame's media time → its picture sent
        self.audio_dropped = 0              # overflow drops (samples)
        self.video_dropped = 0
        self.flushes = 0
        self.closed = False

    # -- the media clock ----------------------------------------------------------------------
    def media_clock(self, now: float) -> float | None:
        """Media time (s; frame n starts at n × 40 ms) at monotonic time `now`, or None yet.

        The anchor is the earliest (push time − media time) of the last 2 s of ticks: the media
        clock's own schedule, without the loop's lateness on any one tick."""
        return None if self._anchor is None else now - self._anchor

    def _tick(self, index: int, now: float) -> None:
        self._offsets.append(now - index * FRAME_SECONDS)
        self._anchor = min(self._offsets)

    # -- AVSink (called on the loop by the media clock; never blocks) --------------------------
    def push_audio(self, index: int, pcm: np.ndarray) -> None:
        self._tick(index, time.monotonic())
        base = index * SAMPLES_PER_FRAME
        for off in range(0, pcm.size, AUDIO_CHUNK):
            if len(self._audio) == self._audio.maxlen:
                self.audio_dropped += AUDIO_CHUNK
            self._audio.append(_AudioChunk(base + off, pcm[off:off + AUDIO_CHUNK]))
        self._audio_ready.set()

    def push_video(self, index: int, image: np.ndarray) -> None:
        if len(self._video) == self._video.maxlen:
            self.video_dropped += 1
        self._video.append((index, image))
        self._video_ready.set()

    def flush(self) -> int:
        dropped = 0
        for chunk in self._audio:
            if not chunk.silent:
                dropped += chunk.pcm.size
                chunk.pcm, chunk.silent = _SILENCE, True
        self._video.clear()
        self.flushes += 1
        return dropped

    def close(self) -> None:
        self.closed = True
        self._audio_ready.set()
        self._video_ready.set()

    # -- track side ---------------------------------------------------------------------------
    def audio_due(self, pts: int) -> float:
        """Monotonic time chunk `pts` should leave: its media time plus the A/V hold-back."""
        assert self._anchor is not None
        return self._anchor + pts / SAMPLE_RATE + (self.hold() if self.hold_av else 0.0)

    async def next_audio(self) -> _AudioChunk:
        while True:
            if self.closed:
                raise MediaStreamError
            if self._audio:
                wait = self.audio_due(self._audio[0].pts) - time.monotonic()
                if wait <= 0.001:
                    return self._audio.popleft()
                await asyncio.sleep(wait)     # a flush keeps the chunk (silenced), so just wait
                continue
            self._audio_ready.clear()
            await self._audio_ready.wait()

    async def next_video(self) -> tuple[int, np.ndarray]:
        while not self._video:
            if self.closed:
                raise MediaStreamError
            self._video_ready.clear()
            await self._video_ready.wait()
        if self.closed:
            raise MediaStreamError
        index, image = self._video.pop()          # the newest; older ones are stale
        self.video_dropped += len(self._video)
        self._video.clear()
        return index, image

    def video_sent(self, index: int) -> None:
        """The sender came back for another frame: frame `index` is encoded and sent."""
        media = self.media_clock(time.monotonic())
        if media is None:
            return
        lag = media - index * FRAME_SECONDS
        if 0 <= lag < 1.0:
            self.video_lag += HOLD_EWMA * (lag - self.video_lag)

    def hold(self) -> float:
        return min(MAX_AV_HOLD_S, self.video_lag)


class AvatarAudioTrack(MediaStreamTrack):
    kind = "audio"

    def __init__(self, sink: PeerSink) -> None:
        super().__init__()
        self._sink = sink

    def media_clock(self, now: float) -> float | None:
        """For the RTCP sender-report patch (`patches.py`); leads by `AUDIO_SR_LEAD_S`."""
        media = self._sink.media_clock(now)
        return None if media is None else media + AUDIO_SR_LEAD_S

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        chunk = await self._sink.next_audio()
        frame = av.AudioFrame.from_ndarray(chunk.pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = SAMPLE_RATE
        frame.pts = chunk.pts
        frame.time_base = AUDIO_TIME_BASE
        return frame

    def stop(self) -> None:
        super().stop()
        self._sink.close()


class AvatarVideoTrack(MediaStreamTrack):
    kind = "video"

    def __init__(self, sink: PeerSink) -> None:
        super().__init__()
        self._sink = sink
        self._last: int | None = None
        self.frames_sent = 0

    def media_clock(self, now: float) -> float | None:
        """For the RTCP sender-report patch (`patches.py`)."""
        return self._sink.media_clock(now)

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._last is not None:
            self._sink.video_sent(self._last)
        index, image = await self._sink.next_video()
        if image.ndim == 3 and image.shape[2] == 4:
            image = stack_alpha(image)
        # zero-copy: pictures are never written after the renderer returns them (the media clock
        # shares one array between every peer); the VP8 path converts to I420 in its thread
        frame = av.VideoFrame.from_numpy_buffer(np.ascontiguousarray(image), format="rgb24")
        frame.pts = index * VIDEO_TICKS_PER_FRAME
        frame.time_base = VIDEO_TIME_BASE
        self._last = index
        self.frames_sent += 1
        return frame

    def stop(self) -> None:
        super().stop()
        self._sink.close()
