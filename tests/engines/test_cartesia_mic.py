"""The Cartesia engine keeps the mic stream continuous: silence when no user audio arrives.

Pacing runs on the engine's clock: most tests drive a `VirtualClock` and check exactly what
the stand-in agent received; one measures the real clock with loose bounds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from tests.polling import until

from facecast.clock import Clock, SystemClock, VirtualClock
from facecast.config import Settings
from facecast.engines.cartesia import MIC_SILENCE_GRACE, CartesiaEngine
from facecast.engines.config import CartesiaEngineConfig
from facecast.media.audio import MIC_RESAMPLE_QUALITY, Resampler
from facecast.testing.cartesia_agent import AgentConnection, CartesiaStandIn
from facecast.testing.host import RecordingHost

SR = 24_000
CHUNK = SR // 50            # 20 ms
APIS = ["line", "agents"]


def numbered(n: int, base: int = 1000) -> np.ndarray:
    """Never-zero samples that say where they came from."""
    return (base + np.arange(n) % 20000).astype(np.int16)




@dataclass
class MicCall:
    engine: CartesiaEngine
    conn: AgentConnection
    clock: Clock

    def received(self) -> np.ndarray:
        return self.conn.received_pcm()

    async def delivered(self) -> np.ndarray:
        """What the agent received, once everything the engine sent has arrived."""
        await until(lambda: self.received().size == CHUNK * self.engine.mic_chunks_sent,
                    what="sent mic chunks at the agent")
        return self.received()

    async def advance(self, seconds: float, step: float = 0.01) -> None:
        """Move the virtual clock in small steps, letting the sender act on each."""
        clock = self.clock
        assert isinstance(clock, VirtualClock)
        for _ in range(round(seconds / step)):
            clock.advance(step)
            # the sender is parked on exactly one timer whenever it has nothing left to do
            await until(lambda: clock.pending == 1, what="the sender parked")  # noqa: B023
            await self.delivered()


@asynccontextmanager
async def mic_call(api: str, clock: Clock, **standin: Any) -> AsyncIterator[MicCall]:
    async with CartesiaStandIn(persona=None, **standin) as agent:
        host = RecordingHost(session_id="sess_mic")
        config = CartesiaEngineConfig(type="cartesia", agent_id="agent_1",
                                      access_token=SecretStr("tok"), api=api)  # type: ignore[arg-type]
        engine = CartesiaEngine(config, host, Settings(cartesia_url=agent.url), clock=clock)
        host.engine = engine
        try:
            await engine.start()
            conn = await agent.next_connection()
            await conn.wait_started()
            yield MicCall(engine, conn, clock)
        finally:
            await engine.close()
            assert [t for t in asyncio.all_tasks() if t.get_name().startswith("cartesia:")] == []


@pytest.mark.parametrize("api", APIS)
async def test_silence_fills_gaps_at_real_time_and_never_splits_real_audio(api: str) -> None:
    clock = VirtualClock()
    async with mic_call(api, clock) as c:
        await until(lambda: clock.pending == 1, what="the sender parked")
        # no page, no mic: nothing during the grace period, then 20 ms of silence per 20 ms
        await c.advance(MIC_SILENCE_GRACE - 0.05)
        assert c.received().size == 0
        await c.advance(1.05)                                   # t = 1.2 s
        got = await c.delivered()
        assert not got.any()
        assert got.size % CHUNK == 0
        assert abs(got.size / SR - (1.2 - MIC_SILENCE_GRACE)) <= 0.045   # about real time
        silence_before = got.size

        # the user talks, 20 ms at a time at real time: each frame reaches the agent before the
        # clock moves at all (no added latency) and no silence gets in between
        speech = numbered(SR)
        for i in range(0, speech.size, CHUNK):
            c.engine.push_mic(speech[i:i + CHUNK], SR)
            await until(lambda: c.received().size == silence_before + i + CHUNK,  # noqa: B023
                        what="user audio at the agent")
            await c.advance(0.02, step=0.02)
        got = await c.delivered()
        assert np.array_equal(got[silence_before:], speech)     # intact, in order, uninterrupted

        # the user stops: silence again after the grace period, still paced
        await c.advance(MIC_SILENCE_GRACE - 0.03)
        assert c.received().size == silence_before + speech.size
        await c.advance(0.53)
        got = await c.delivered()
        tail = got[silence_before + speech.size:]
        assert not tail.any()
        assert abs(tail.size / SR - 0.5) <= 0.045
        assert c.engine.silence_chunks_sent * CHUNK == silence_before + tail.size


async def test_user_audio_tail_is_flushed_before_silence() -> None:
    """The resampler and the 20 ms chunker hold a little of the user's audio: when the user
    audio stops, that goes out first, in order, and silence follows."""
    clock = VirtualClock()
    rate = 48_000
    t = np.arange(int(0.31 * rate)) / rate
    mic = (6000 * np.sin(2 * np.pi * 300 * t)).astype(np.int16)
    frames = [mic[i:i + 960] for i in range(0, mic.size, 960)]  # 20 ms; the last one 10 ms
    ref = Resampler(rate, SR, quality=MIC_RESAMPLE_QUALITY)
    expected = np.concatenate([ref.process(f) for f in frames]
                              + [ref.process(np.zeros(0, np.int16), last=True)])
    async with mic_call("line", clock) as c:
        for frame in frames:
            c.engine.push_mic(frame, rate)
            await c.advance(0.02, step=0.02)
        await c.advance(MIC_SILENCE_GRACE + 0.1)
        got = await c.delivered()
    diff = got[:expected.size].astype(np.int32) - expected
    assert np.abs(diff).max() <= 2                              # soxr dithers the last bit
    assert not got[expected.size:].any()
    assert got.size - expected.size >= 0.09 * SR                # silence has begun


async def test_real_clock_silence_keeps_an_idle_call_alive() -> None:
    """With the system clock and no mic at all, silence flows at about real time, so the agent
    sees a live caller (its idle timeout never fires)."""
    async with mic_call("line", SystemClock(), idle_timeout=0.6) as c:
        t0 = time.monotonic()
        await asyncio.sleep(1.5)
        elapsed = time.monotonic() - t0
        got = c.received()
        assert not c.conn.closed
    assert not got.any()
    expected = (elapsed - MIC_SILENCE_GRACE) * SR
    assert 0.5 * expected <= got.size <= expected + 0.1 * SR   # loose: a shared CI machine

