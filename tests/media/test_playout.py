"""SpeechBuffer: segments, barge-in, backpressure; AvatarStream: the media clock."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from facecast.media.avstream import AvatarStream
from facecast.media.playout import NoOpenSegment, PlaybackEvent, SpeechBuffer

N = 960


def tone(n: int, value: int = 1000) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def collect(buf: SpeechBuffer) -> list[PlaybackEvent]:
    events: list[PlaybackEvent] = []
    buf.subscribe(events.append)
    return events


def kinds(events: list[PlaybackEvent]) -> list[tuple[str, str, bool]]:
    return [(e.kind, e.segment.id, e.interrupted) for e in events]


def test_auto_segments_open_on_audio_and_end_on_drain() -> None:
    buf = SpeechBuffer(mode="auto")
    events = collect(buf)
    seg = buf.write_nowait(tone(1500))
    assert events == []  # nothing played yet
    r = buf.read(N)
    assert r.speech_samples == N and (r.pcm == 1000).all()
    assert kinds(events) == [("started", seg.id, False)]
    r = buf.read(N)
    assert r.speech_samples == 540 and (r.pcm[540:] == 0).all()
    assert kinds(events)[-1] == ("ended", seg.id, False)
    assert events[-1].played_samples == 1500
    seg2 = buf.write_nowait(tone(10))
    assert seg2 is not seg and buf.is_idle() is False


def test_auto_drain_grace_rides_over_jitter() -> None:
    buf = SpeechBuffer(mode="auto", drain_grace_reads=2)
    events = collect(buf)
    seg = buf.write_nowait(tone(N))
    buf.read(N)
    buf.read(N)              # one empty read: still speaking
    buf.write_nowait(tone(N))  # late chunk joins the same segment
    buf.read(N)
    assert [k for k, *_ in kinds(events)] == ["started"]
    buf.read(N)
    buf.read(N)
    assert kinds(events) == [("started", seg.id, False), ("ended", seg.id, False)]
    assert events[-1].played_samples == 2 * N


def test_clear_drops_everything_at_once() -> None:
    buf = SpeechBuffer(mode="auto")
    events = collect(buf)
    seg = buf.write_nowait(tone(24000 * 5))
    buf.read(N)
    cut = buf.clear()
    assert cut is seg
    assert kinds(events) == [("started", seg.id, False), ("ended", seg.id, True)]
    assert events[-1].played_samples == N
    assert buf.buffered_samples == 0
    r = buf.read(N)
    assert r.speech_samples == 0 and not r.pcm.any()  # no sample of the cleared reply
    nxt = buf.write_nowait(tone(N, 7))
    assert nxt is not seg and buf.read(N).pcm[0] == 7


def test_clear_accounts_for_downstream_buffers() -> None:
    buf = SpeechBuffer(mode="auto")
    events = collect(buf)
    buf.set_downstream_flush(lambda: 480)
    buf.write_nowait(tone(24000))
    buf.read(N)
    buf.read(N)
    buf.clear()
    assert events[-1].interrupted and events[-1].played_samples == 2 * N - 480


def test_explicit_segments() -> None:
    buf = SpeechBuffer(mode="explicit")
    events = collect(buf)
    with pytest.raises(NoOpenSegment):
        buf.write_nowait(tone(10))
    a = buf.open("uid-a")
    buf.write_nowait(tone(N + 100))
    buf.read(N)
    buf.read(N)  # underrun inside an open segment: it keeps going
    assert [k for k, *_ in kinds(events)] == ["started"]
    buf.write_nowait(tone(100))
    buf.close()
    buf.read(N)
    assert kinds(events) == [("started", a.id, False), ("ended", a.id, False)]
    assert events[-1].played_samples == N + 200
    assert buf.is_idle()
    empty = buf.open("uid-empty")
    buf.close()
    assert kinds(events)[-1] == ("ended", empty.id, False)


async def test_backpressure_and_clear_while_waiting() -> None:
    buf = SpeechBuffer(mode="auto", capacity_seconds=0.1)  # 2400 samples
    await buf.write(tone(2000))
    blocked = asyncio.create_task(buf.write(tone(2000)))
    await asyncio.sleep(0)
    assert not blocked.done()
    buf.read(N)
    buf.read(N)  # room now
    await asyncio.wait_for(blocked, 1)
    assert blocked.result() is not None
    stale = asyncio.create_task(buf.write(tone(2400)))
    await asyncio.sleep(0)
    buf.clear()
    assert await asyncio.wait_for(stale, 1) is None  # audio of the cleared reply is dropped
    assert buf.buffered_samples == 0


async def test_wait_idle() -> None:
    buf = SpeechBuffer(mode="auto")
    buf.write_nowait(tone(N * 2))
    waiter = asyncio.create_task(buf.wait_idle())
    buf.read(N)
    await asyncio.sleep(0)
    assert not waiter.done()
    buf.read(N)
    await asyncio.wait_for(waiter, 1)


class CountingRenderer:
    lookahead_frames = 1

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []
        self.resets = 0

    def render(self, pcm: np.ndarray, lookahead: np.ndarray) -> np.ndarray:
        self.seen.append((int(pcm[0]), lookahead.size))
        return np.full((8, 8, 3), int(pcm[0]) % 256, dtype=np.uint8)

    def reset(self) -> None:
        self.resets += 1


class ListSink:
    def __init__(self) -> None:
        self.audio: list[tuple[int, np.ndarray]] = []
        self.video: list[tuple[int, np.ndarray]] = []

    def push_audio(self, index: int, pcm: np.ndarray) -> None:
        self.audio.append((index, pcm))

    def push_video(self, index: int, image: np.ndarray) -> None:
        self.video.append((index, image))

    def flush(self) -> int:
        dropped = sum(p.size for _, p in self.audio[-2:])
        return dropped


async def test_avatar_stream_frames_carry_their_audio() -> None:
    buf = SpeechBuffer(mode="auto")
    renderer = CountingRenderer()
    with ThreadPoolExecutor(1) as pool:
        stream = AvatarStream(buf, renderer, pool)
        sink = ListSink()
        stream.add_sink(sink)
        buf.write_nowait(np.concatenate([tone(N, 5), tone(N, 6)]))
        for _ in range(3):
            stream.tick()
            await asyncio.gather(*list(stream._pending_video))
    assert [i for i, _ in sink.audio] == [0, 1, 2]
    assert [int(p[0]) for _, p in sink.audio] == [5, 6, 0]
    assert [(i, int(img[0, 0, 0])) for i, img in sink.video] == [(0, 5), (1, 6), (2, 0)]
    assert renderer.seen[0] == (5, N)  # lookahead: the next frame's audio


async def test_clear_resets_the_renderer_and_flushes_sinks() -> None:
    buf = SpeechBuffer(mode="auto")
    events = collect(buf)
    renderer = CountingRenderer()
    with ThreadPoolExecutor(1) as pool:
        stream = AvatarStream(buf, renderer, pool)
        stream.add_sink(ListSink())
        buf.write_nowait(tone(N * 10, 9))
        for _ in range(3):
            stream.tick()
            await asyncio.gather(*list(stream._pending_video))
        buf.clear()
        stream.tick()
        await asyncio.gather(*list(stream._pending_video))
    assert renderer.resets == 1
    assert events[-1].interrupted and events[-1].played_samples == 3 * N - 2 * N


async def test_a_picture_rendered_for_a_cleared_reply_is_not_shown() -> None:
    buf = SpeechBuffer(mode="auto")
    renderer = CountingRenderer()
    with ThreadPoolExecutor(1) as pool:
        stream = AvatarStream(buf, renderer, pool)
        sink = ListSink()
        stream.add_sink(sink)
        buf.write_nowait(tone(N * 10, 9))
        stream.tick()                       # renders frame 0 (speech) in the worker...
        in_flight = list(stream._pending_video)
        buf.clear()                         # ...while the user barges in
        await asyncio.gather(*in_flight)
        stream.tick()
        await asyncio.gather(*list(stream._pending_video))
    assert [i for i, _ in sink.video] == [1]   # frame 0 (open mouth, cut reply) never shown
