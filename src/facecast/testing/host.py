"""A real `EngineHost` for engine tests: a real `SpeechBuffer` drained by a paced media clock.

It plays the part of the session runtime without WebRTC: agent speech is read 960 samples per
40 ms tick (real time, or as fast as possible with `realtime=False`) and kept, so tests can
assert exactly which samples "reached the playout".
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facecast.media.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from facecast.media.playout import PlaybackEvent, SpeechBuffer
from facecast.sessions.state import EndReason, TaskState


@dataclass
class EndRequest:
    reason: EndReason
    error_code: str | None
    message: str | None
    after_speech: bool


@dataclass
class RecordingHost:
    session_id: str = "sess_test"
    mode: str = "auto"
    drain_grace_reads: int = 0
    speech: SpeechBuffer = field(init=False)
    sdk_events: list[dict[str, Any]] = field(default_factory=list)
    playback_events: list[PlaybackEvent] = field(default_factory=list)
    end_requests: list[EndRequest] = field(default_factory=list)
    task_states: list[tuple[str, TaskState]] = field(default_factory=list)
    played: list[np.ndarray] = field(default_factory=list)   # speech samples read per tick
    engine: Any = None                                        # gets on_playback() if set

    def __post_init__(self) -> None:
        self.speech = SpeechBuffer(mode=self.mode, drain_grace_reads=self.drain_grace_reads)  # type: ignore[arg-type]
        self.speech.subscribe(self._on_playback)
        self._clock_task: asyncio.Task[None] | None = None
        self._ended = asyncio.Event()

    def _on_playback(self, event: PlaybackEvent) -> None:
        self.playback_events.append(event)
        if self.engine is not None:
            self.engine.on_playback(event)

    # -- EngineHost --------------------------------------------------------------------------
    def send_to_sdk(self, event: dict[str, Any]) -> None:
        self.sdk_events.append(event)

    def end_session(self, reason: EndReason, *, error_code: str | None = None,
                    message: str | None = None, after_speech: bool = False) -> None:
        self.end_requests.append(EndRequest(reason, error_code, message, after_speech))
        self._ended.set()

    def set_task_state(self, task_id: str, state: TaskState) -> None:
        self.task_states.append((task_id, state))

    # -- the media clock ---------------------------------------------------------------------
    def start_clock(self, realtime: bool = True) -> None:
        self._clock_task = asyncio.create_task(self._run_clock(realtime), name="test-media-clock")

    async def _run_clock(self, realtime: bool) -> None:
        start = time.monotonic()
        n = 0
        while True:
            if realtime:
                due = start + n * SAMPLES_PER_FRAME / SAMPLE_RATE
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            else:
                await asyncio.sleep(0)
            result = self.speech.read(SAMPLES_PER_FRAME)
            if result.speech_samples:
                self.played.append(result.pcm[:result.speech_samples].copy())
            n += 1

    async def stop_clock(self) -> None:
        if self._clock_task is not None:
            self._clock_task.cancel()
            try:
                await self._clock_task
            except asyncio.CancelledError:
                pass
            self._clock_task = None

    async def wait_ended(self, timeout: float = 5.0) -> EndRequest:
        await asyncio.wait_for(self._ended.wait(), timeout)
        return self.end_requests[0]

    def played_audio(self) -> np.ndarray:
        return np.concatenate(self.played) if self.played else np.zeros(0, dtype=np.int16)
