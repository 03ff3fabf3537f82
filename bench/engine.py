"""Cartesia engine figures, on loopback, against the Cartesia stand-in.

    .venv/bin/python bench/engine.py [--api line|agents] [--runs 50] [--seconds 30]

The stand-in runs in its own thread with its own event loop, so its sends are concurrent with the
engine (as a remote agent's are) and its CPU is not charged to the engine. Times are
`time.perf_counter()` in both threads (one monotonic clock).

- clear sent → cleared: the stand-in sends `clear` (after sending ~1 s of audio ahead of
  playback) → the playout buffer has dropped the last sample of that reply (the interrupted
  playback event, emitted by `SpeechBuffer.clear()` once it has emptied). Target ≤ 5 ms.
- media_output sent → in buffer: the stand-in sends a 40 ms chunk → its samples are in the
  `SpeechBuffer` (includes the loopback socket and the engine loop waking up). Target ≤ 2 ms.
- received → in buffer: the engine's `recv()` returns the frame → its samples are in the buffer
  (the engine's own work: JSON, base64, int16, write).
- CPU: main-thread CPU seconds (engine + its websocket + a 40 ms media clock + a 20 ms mic
  pusher at 48 kHz) per minute of a conversation where the agent talks about half the time and
  the user barges in every ~10 s; minus the same run without an engine (clock + pusher only).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import statistics
import threading
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
from pydantic import SecretStr

from facecast.config import Settings
from facecast.engines.cartesia import CartesiaEngine
from facecast.engines.config import CartesiaEngineConfig
from facecast.media.playout import PlaybackEvent, SpeechBuffer
from facecast.testing.cartesia_agent import AgentConnection, CartesiaStandIn
from facecast.testing.host import RecordingHost

SR = 24_000
T = TypeVar("T")


def tone(seconds: float, freq: float = 220.0, amp: float = 8000.0, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


class StandInThread:
    """The stand-in on its own loop in a daemon thread."""

    def __init__(self, **options: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="standin", daemon=True)
        self.options = options
        self.agent: CartesiaStandIn | None = None

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    async def __aenter__(self) -> StandInThread:
        self.thread.start()

        async def start() -> CartesiaStandIn:
            return await CartesiaStandIn(persona=None, **self.options).start()

        self.agent = await self.run(start())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.agent is not None:
            await self.run(self.agent.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class TimedBuffer(SpeechBuffer):
    """Stamps the moment samples become available to the media clock."""

    def __init__(self) -> None:
        super().__init__(mode="auto")
        self.written_at: list[float] = []

    def write_nowait(self, pcm: np.ndarray) -> Any:
        seg = super().write_nowait(pcm)
        self.written_at.append(time.perf_counter())
        return seg


def frames(api: str, stream_id: str | None, pcm: np.ndarray, chunk: int) -> list[str]:
    out = []
    for i in range(0, pcm.size, chunk):
        b64 = base64.b64encode(pcm[i:i + chunk].astype("<i2").tobytes()).decode()
        if api == "line":
            out.append(json.dumps({"event": "media_output", "stream_id": stream_id,
                                   "media": {"payload": b64}}))
        else:
            out.append(json.dumps({"type": "audio_output", "audio": b64}))
    return out


def clear_frame(api: str, stream_id: str | None) -> str:
    if api == "line":
        return json.dumps({"event": "clear", "stream_id": stream_id})
    return json.dumps({"type": "audio_output_clear"})


async def until(pred: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise TimeoutError("bench: condition not reached")
        await asyncio.sleep(0.002)


async def open_session(side: StandInThread, api: str, host: RecordingHost
                       ) -> tuple[CartesiaEngine, AgentConnection]:
    assert side.agent is not None
    config = CartesiaEngineConfig(type="cartesia", agent_id="bench", api=api,  # type: ignore[arg-type]
                                  access_token=SecretStr("bench-token"))
    engine = CartesiaEngine(config, host, Settings(cartesia_url=side.agent.url))
    host.engine = engine
    await engine.start()
    conn = await side.run(side.agent.next_connection())
    return engine, conn


async def latency(api: str, runs: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"clear": [], "e2e": [], "engine": []}
    async with StandInThread() as side:
        host = RecordingHost(session_id="bench")
        buf = TimedBuffer()
        host.speech = buf
        cleared_at: list[float] = []

        def on_event(ev: PlaybackEvent) -> None:
            if ev.kind == "ended" and ev.interrupted:
                cleared_at.append(time.perf_counter())

        buf.subscribe(on_event)
        host.start_clock()
        engine, conn = await open_session(side, api, host)
        ws = engine._ws
        assert ws is not None
        recv_at: list[float] = []
        real_recv = ws.recv

        async def timed_recv(*args: Any, **kwargs: Any) -> Any:
            msg = await real_recv(*args, **kwargs)
            recv_at.append(time.perf_counter())
            return msg

        ws.recv = timed_recv  # type: ignore[method-assign]
        # the reader is already parked in the original recv(): let one frame go through it
        await side.run(conn.ws.send(json.dumps({"event": "bench_noop", "type": "bench_noop"})))
        await until(lambda: engine.frames_received >= 1)

        # media_output → in the buffer: 40 ms chunks, paced at real time
        sent_at: list[float] = []

        async def paced_send(texts: list[str]) -> None:
            start = time.perf_counter()
            for k, text in enumerate(texts):
                delay = start + k * 0.04 - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at.append(time.perf_counter())
                await conn.ws.send(text)

        texts = frames(api, conn.stream_id, tone(runs * 4 * 0.04), 960)
        n0, r0 = len(buf.written_at), len(recv_at)
        await side.run(paced_send(texts))
        await until(lambda: len(buf.written_at) - n0 >= len(texts))
        written = buf.written_at[n0:n0 + len(texts)]
        received = recv_at[r0:r0 + len(texts)]
        out["e2e"] = [(w - s) * 1000 for s, w in zip(sent_at, written, strict=True)]
        out["engine"] = [(w - r) * 1000 for r, w in zip(received, written, strict=True)]
        await until(buf.is_idle)

        # clear sent → last cleared sample dropped
        reply = frames(api, conn.stream_id, tone(1.0), 960)
        clear = clear_frame(api, conn.stream_id)
        clear_sent: list[float] = []

        async def blast_then_clear() -> None:
            for text in reply:
                await conn.ws.send(text)
            await asyncio.sleep(0.15)
            clear_sent.append(time.perf_counter())
            await conn.ws.send(clear)

        for _ in range(runs):
            before = len(cleared_at)
            await side.run(blast_then_clear())
            await until(lambda before=before: len(cleared_at) > before)  # type: ignore[misc]
            out["clear"].append((cleared_at[-1] - clear_sent[-1]) * 1000)
            await asyncio.sleep(0.02)
        await engine.close()
        await host.stop_clock()
    return out


async def conversation(api: str, seconds: float, with_engine: bool) -> tuple[float, str]:
    """Main-thread CPU seconds used over `seconds` of simulated conversation."""
    async with StandInThread() as side:
        host = RecordingHost(session_id="bench")
        host.start_clock()
        engine: CartesiaEngine | None = None
        conn: AgentConnection | None = None
        if with_engine:
            engine, conn = await open_session(side, api, host)
        quiet = (np.random.default_rng(1).normal(0, 30, 48_000 * 60)).astype(np.int16)
        loud = tone(0.3, 440, 12000, 48_000)

        async def agent_script(c: AgentConnection) -> None:
            utterance = tone(2.0, 180, 6000)
            while True:
                speech = await c.say(utterance)
                await speech.wait()
                await asyncio.sleep(2.0)

        script = None
        if conn is not None:
            script = asyncio.run_coroutine_threadsafe(agent_script(conn), side.loop)
        await asyncio.sleep(0.5)
        cpu0, t0 = time.thread_time(), time.perf_counter()
        k = 0
        while True:
            now = time.perf_counter()
            if now - t0 >= seconds:
                break
            await asyncio.sleep(max(0.0, t0 + k * 0.02 - now))
            second = k // 50
            if second % 10 == 9 and k % 50 < 15:      # the user talks over the agent, 0.3 s
                i = (k % 50) * 960
                frame = loud[i:i + 960]
            else:
                i = (k * 960) % (quiet.size - 960)
                frame = quiet[i:i + 960]
            if engine is not None:
                engine.push_mic(frame, 48_000)
            k += 1
        cpu = time.thread_time() - cpu0
        if script is not None:
            script.cancel()
        stats = ""
        if engine is not None:
            stats = (f"agent speech played {host.played_audio().size / SR:.1f} s, "
                     f"{engine.clears} barge-ins, {engine.mic_chunks_sent} mic chunks sent, "
                     f"{engine.frames_received} frames received")
            await engine.close()
        await host.stop_clock()
        return cpu, stats


def row(name: str, values: list[float], target: str) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"| {name:<36} | {len(values):>4} | {statistics.median(values):7.3f} | "
            f"{p95:7.3f} | {max(values):7.3f} | {target:<6} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--api", choices=["line", "agents"], default="line")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    lat = await latency(args.api, args.runs)
    print(f"Cartesia engine ({args.api}), loopback, stand-in in another thread")
    print("| figure (ms)                          |    n |  median |     p95 |     max | target |")
    print("|--------------------------------------|------|---------|---------|---------|--------|")
    print(row("clear sent → last sample dropped", lat["clear"], "≤ 5"))
    print(row("media_output sent → in SpeechBuffer", lat["e2e"], "≤ 2"))
    print(row("media_output received → in buffer", lat["engine"], "≤ 2"))

    base, _ = await conversation(args.api, args.seconds, with_engine=False)
    full, stats = await conversation(args.api, args.seconds, with_engine=True)
    per_min = (full - base) / args.seconds * 60
    print()
    print(f"| CPU over {args.seconds:.0f} s of conversation (main thread)        | cpu s | s/min |")
    print("|--------------------------------------------------|-------|-------|")
    print(f"| clock + mic pusher, no engine                    | {base:5.2f} | "
          f"{base / args.seconds * 60:5.2f} |")
    print(f"| with the engine session                          | {full:5.2f} | "
          f"{full / args.seconds * 60:5.2f} |")
    print(f"| engine session alone                             | {full - base:5.2f} | "
          f"{per_min:5.2f} |  ({per_min / 60 * 100:.2f} % of one core)")
    print(f"({stats})")


if __name__ == "__main__":
    asyncio.run(main())
