"""MicStream on its own: a bounded queue, exact chunks at the target rate, silence padding paced
on a `VirtualClock`. `send` records each chunk; the engine-level checks (what an agent hears) are
in test_cartesia_mic.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import numpy as np
import pytest

from facecast.clock import VirtualClock
from facecast.engines.mic import MicStream
from facecast.media.audio import MIC_RESAMPLE_QUALITY, Resampler

SR = 24_000
CHUNK = SR // 50            # 20 ms
GRACE = 0.2


def numbered(n: int, base: int = 1000) -> np.ndarray:
    """Never-zero samples that say where they came from."""
    return (base + np.arange(n) % 20000).astype(np.int16)


def tone(seconds: float, rate: int, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


class Sink:
    def __init__(self) -> None:
        self.chunks: list[np.ndarray] = []

    async def send(self, chunk: np.ndarray) -> None:
        self.chunks.append(chunk.copy())

    def pcm(self) -> np.ndarray:
        return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int16)


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


@asynccontextmanager
async def running(mic: MicStream) -> AsyncIterator[Sink]:
    sink = Sink()
    task = asyncio.create_task(mic.run(sink.send), name="test-mic-sender")
    try:
        await settle()
        yield sink
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def advance(clock: VirtualClock, seconds: float, step: float = 0.01) -> None:
    for _ in range(round(seconds / step)):
        clock.advance(step)
        await settle()


def padded(clock: VirtualClock, catchup: int = 5) -> MicStream:
    return MicStream(rate=SR, pad_silence=True, grace=GRACE, catchup=catchup, clock=clock)


# -- the queue --------------------------------------------------------------------------------
async def test_queue_is_bounded_and_drops_the_oldest() -> None:
    mic = MicStream(rate=SR, queue_seconds=1.0, clock=VirtualClock())
    audio = numbered(3 * SR)
    for i in range(0, audio.size, 480):            # 3 s pushed before the sender runs
        mic.push(audio[i:i + 480], SR)             # never blocks
    assert mic.dropped == 100                      # 2 s of 20 ms pushes
    async with running(mic) as sink:
        assert np.array_equal(sink.pcm(), audio[-SR:])   # the newest second, intact
    assert mic.chunks_sent == SR // CHUNK and mic.silence_chunks_sent == 0


async def test_one_push_larger_than_the_queue_is_kept() -> None:
    mic = MicStream(rate=SR, queue_seconds=1.0, clock=VirtualClock())
    audio = numbered(2 * SR)
    mic.push(audio[:CHUNK], SR)
    mic.push(audio, SR)                             # 2 s at once: the older push goes
    assert mic.dropped == 1
    async with running(mic) as sink:
        assert np.array_equal(sink.pcm(), audio)


async def test_push_checks_its_input() -> None:
    mic = MicStream(clock=VirtualClock())
    mic.push(np.zeros(0, np.int16), SR)             # nothing: ignored
    with pytest.raises(TypeError):
        mic.push(np.zeros(10, np.float32), SR)
    with pytest.raises(ValueError):
        mic.push(np.zeros(10, np.int16), 0)
    async with running(mic) as sink:
        assert sink.chunks == []


# -- chunks -----------------------------------------------------------------------------------
async def test_chunks_are_exact_at_the_same_rate() -> None:
    mic = MicStream(rate=SR, clock=VirtualClock())
    audio = numbered(SR)
    sizes = [1, 479, 481, 37, 1001, 7, 3000]        # 4 rounds: 20 024 samples
    async with running(mic) as sink:
        i = 0
        for n in sizes * 4:
            mic.push(audio[i:i + n], SR)
            i += n
            await settle()
    assert {c.size for c in sink.chunks} == {CHUNK}
    got = sink.pcm()
    assert got.size == (i // CHUNK) * CHUNK         # only whole chunks; the rest is held
    assert np.array_equal(got, audio[:got.size])


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48_000, 24_000), (44_100, 16_000)])
async def test_chunks_are_exact_20ms_at_the_target_rate(in_rate: int, out_rate: int) -> None:
    mic = MicStream(rate=out_rate, clock=VirtualClock())
    audio = tone(0.5, in_rate)
    ref = Resampler(in_rate, out_rate, quality=MIC_RESAMPLE_QUALITY)
    expected = []
    async with running(mic) as sink:
        i = 0
        for n in [13, 997, 441, 2048, 1] * 10:
            frame = audio[i:i + n]
            i += n
            mic.push(frame, in_rate)
            expected.append(ref.process(frame))
            await settle()
    assert {c.size for c in sink.chunks} == {out_rate // 50}
    want = np.concatenate(expected)
    got = sink.pcm()
    assert want.size - got.size < out_rate // 50    # all but the partial last chunk
    assert np.abs(got.astype(np.int32) - want[:got.size]).max() <= 2   # soxr dithers the last bit


async def test_chunk_duration_is_an_option() -> None:
    mic = MicStream(rate=16_000, chunk_seconds=0.01, clock=VirtualClock())
    async with running(mic) as sink:
        mic.push(numbered(1000), 16_000)
        await settle()
    assert [c.size for c in sink.chunks] == [160] * 6


# -- silence padding --------------------------------------------------------------------------
async def test_without_padding_an_idle_stream_sends_nothing() -> None:
    clock = VirtualClock()
    mic = MicStream(rate=SR, clock=clock)
    async with running(mic) as sink:
        assert clock.pending == 0                   # waits for a push, no timer
        await advance(clock, 1.0)
        assert sink.chunks == []


async def test_silence_fills_gaps_at_real_time_and_never_splits_real_audio() -> None:
    clock = VirtualClock()
    mic = padded(clock)
    async with running(mic) as sink:
        await advance(clock, GRACE - 0.05)
        assert sink.chunks == []                    # nothing during the grace period
        await advance(clock, 1.05)                  # t = 1.2 s
        got = sink.pcm()
        assert not got.any()
        assert abs(got.size / SR - (1.2 - GRACE)) <= 0.045
        silence_before = got.size

        speech = numbered(SR)
        for i in range(0, speech.size, CHUNK):      # the user talks, 20 ms at a time
            mic.push(speech[i:i + CHUNK], SR)
            await settle()
            assert sink.pcm().size == silence_before + i + CHUNK   # sent before the clock moves
            await advance(clock, 0.02, step=0.02)
        assert np.array_equal(sink.pcm()[silence_before:], speech)

        await advance(clock, GRACE - 0.03)          # the user stops: silence after the grace
        assert sink.pcm().size == silence_before + speech.size
        await advance(clock, 0.53)
        tail = sink.pcm()[silence_before + speech.size:]
        assert not tail.any()
        assert abs(tail.size / SR - 0.5) <= 0.045
    assert mic.silence_chunks_sent * CHUNK == silence_before + tail.size
    assert mic.chunks_sent == len(sink.chunks)


async def test_resampler_tail_goes_out_before_silence() -> None:
    clock = VirtualClock()
    mic = padded(clock)
    rate = 48_000
    audio = tone(0.31, rate)
    frames = [audio[i:i + 960] for i in range(0, audio.size, 960)]   # the last one 10 ms
    ref = Resampler(rate, SR, quality=MIC_RESAMPLE_QUALITY)
    expected = np.concatenate([ref.process(f) for f in frames]
                              + [ref.process(np.zeros(0, np.int16), last=True)])
    async with running(mic) as sink:
        for frame in frames:
            mic.push(frame, rate)
            await advance(clock, 0.02, step=0.02)
        await advance(clock, GRACE + 0.1)
        got = sink.pcm()
    assert np.abs(got[:expected.size].astype(np.int32) - expected).max() <= 2
    assert not got[expected.size:].any()
    assert got.size - expected.size >= 0.09 * SR    # silence has begun


async def test_late_silence_catches_up_by_at_most_catchup_chunks() -> None:
    clock = VirtualClock()
    mic = padded(clock, catchup=5)
    async with running(mic) as sink:
        await advance(clock, GRACE + 0.1)
        before = len(sink.chunks)
        clock.advance(1.0)                          # the loop was stalled for a second
        await settle()
        assert len(sink.chunks) - before == 5
        await advance(clock, 0.1)                   # then real time again
        assert len(sink.chunks) - before == 10
