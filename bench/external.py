"""External-engine latency figures, on loopback, with the real media-clock pacing (40 ms ticks).

    .venv/bin/python bench/external.py [--runs 30]

- create → first read: the engine sends `segment.create` + its first 20 ms of audio; how long
  until the media clock reads that audio (the `started` playback event). Includes waiting for the
  next 40 ms clock tick, so expect ~0-40 ms plus transport.
- create → created: round trip of `segment.create` to the engine's `segment.created`.
- interrupt → cleared: `avatar.speech.interrupt` sent → the playout buffer is cleared (facecast side).
- interrupt → interrupted: `avatar.speech.interrupt` sent → the engine receives
  `segment.playback.interrupted`.
- 10 s reply at full speed: how long sending took, and the playback duration error.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import numpy as np

from facecast.config import Settings
from facecast.engines.config import ExternalEngineConfig
from facecast.engines.external import ExternalEngine
from facecast.media.playout import PlaybackEvent
from facecast.testing.external_engine import ExternalEngineStandIn
from facecast.testing.host import RecordingHost

SR = 24_000


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (8000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16)


def row(name: str, values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return (f"| {name:<34} | {len(values):>3} | {statistics.median(values):8.2f} | "
            f"{p95:8.2f} | {max(values):8.2f} |")


async def run(runs: int) -> None:
    create_read: list[float] = []
    create_created: list[float] = []
    int_cleared: list[float] = []
    int_reported: list[float] = []
    async with ExternalEngineStandIn() as side:
        host = RecordingHost(mode="explicit")
        stamps: list[tuple[float, PlaybackEvent]] = []
        host.speech.subscribe(lambda ev: stamps.append((time.monotonic(), ev)))
        config = ExternalEngineConfig.model_validate({"type": "external", "url": side.url})
        engine = ExternalEngine(config, host, Settings())
        host.engine = engine
        host.start_clock(realtime=True)
        await engine.start()
        await side.wait_connected()
        pcm = tone(2.0)
        try:
            for i in range(runs):
                await asyncio.sleep(random.uniform(0.0, 0.04))   # random phase vs the clock
                uid = f"b{i}"
                n_events = len(side.events)
                stamps.clear()
                t0 = time.monotonic()
                await side.create_segment(uid)
                await side.send_audio(pcm, chunk_bytes=960)
                created = await side.wait_event("avatar.speech.segment.created", after=n_events)
                await side.wait_event("avatar.speech.segment.playback.started", after=n_events)
                create_created.append((created.time - t0) * 1000)
                create_read.append((stamps[0][0] - t0) * 1000)
                await asyncio.sleep(random.uniform(0.2, 0.5))
                stamps.clear()
                t1 = time.monotonic()
                await side.interrupt()
                ev = await side.wait_event("avatar.speech.segment.playback.interrupted",
                                           after=n_events)
                int_cleared.append((stamps[0][0] - t1) * 1000)
                int_reported.append((ev.time - t1) * 1000)

            # a 10 s reply sent as fast as the socket takes it
            stamps.clear()
            n_events = len(side.events)
            t0 = time.monotonic()
            await side.speak(tone(10.0), uid="long", chunk_bytes=960)
            sent_ms = (time.monotonic() - t0) * 1000
            await side.wait_event("avatar.speech.segment.playback.ended", after=n_events,
                                  timeout=15)
            (t_start, _), (t_end, _) = stamps[0], stamps[-1]
            played = t_end - t_start + host.played[-1].size / SR
        finally:
            await engine.close()
            await host.stop_clock()

    print(f"external engine on loopback, media clock 40 ms ticks, {runs} runs (ms)\n")
    print(f"| {'figure':<34} | {'n':>3} | {'p50':>8} | {'p95':>8} | {'max':>8} |")
    print(f"|{'-' * 36}|{'-' * 5}|{'-' * 10}|{'-' * 10}|{'-' * 10}|")
    print(row("segment.create -> first audio read", create_read))
    print(row("segment.create -> created (rtt)", create_created))
    print(row("interrupt -> buffer cleared", int_cleared))
    print(row("interrupt -> playback.interrupted", int_reported))
    print(f"\n10 s reply sent in {sent_ms:.1f} ms; played in {played * 1000:.1f} ms "
          f"(error {(played - 10.0) * 1000:+.1f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=30)
    asyncio.run(run(parser.parse_args().runs))


if __name__ == "__main__":
    main()
