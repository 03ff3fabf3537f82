"""The `text-echo` engine: no conversation, the avatar speaks each text task with an espeak voice.

Tasks are spoken in submission order, one explicit segment per task (`segment_uid` = task id).
Synthesis runs off the event loop (`facecast.media.tts.synthesize_async`) and the next task is
synthesised while the current one plays, so queued tasks follow each other without a gap.
Task states: `queued` on submit, `speaking` when its segment starts playing, `done` when it ends
normally (a text with nothing to say plays one frame of silence, so it too ends in its turn), `cancelled` when it is interrupted (`SpeechBuffer.clear()`), fails to synthesise, or the
engine closes first. The mic is ignored.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from facecast.engines.config import TextEchoEngineConfig
from facecast.errors import EngineConnectionError
from facecast.media import tts
from facecast.media.audio import SAMPLE_RATE, SAMPLES_PER_FRAME
from facecast.media.playout import NoOpenSegment, PlaybackEvent
from facecast.sessions.state import TaskState

if TYPE_CHECKING:
    from facecast.config import Settings
    from facecast.engines.base import EngineHost

log = logging.getLogger(__name__)

WRITE_CHUNK = SAMPLE_RATE   # speech enters the playout buffer in 1 s pieces (backpressure)


class TextEchoEngine:
    speech_mode = "explicit"

    def __init__(self, config: TextEchoEngineConfig, host: EngineHost, settings: Settings) -> None:
        self.config = config
        self.host = host
        self.settings = settings
        self.session_id = host.session_id
        self._extra = {"session_id": self.session_id}
        self._queue: deque[tuple[str, str]] = deque()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._segments: dict[str, str] = {}     # segment id → task id
        self._unfinished: list[str] = []        # task ids submitted and not yet done/cancelled
        self._closed = False

    async def start(self) -> None:
        voice = self.config.tts.voice
        # Normally refused at session creation; fail clearly if it slips through.
        if not await asyncio.to_thread(tts.validate_voice, voice):
            raise EngineConnectionError(
                f"text-echo voice {voice!r} is not an installed espeak-ng voice", field="voice")
        self._worker = asyncio.create_task(self._run(), name=f"text-echo-{self.session_id}")
        log.info("[%s] text-echo ready (voice %s, %d wpm, pitch %d)", self.session_id, voice,
                 self.config.tts.rate, self.config.tts.pitch, extra=self._extra)

    def push_mic(self, pcm: np.ndarray, sample_rate: int) -> None:
        return None   # no conversation

    def on_sdk_message(self, data: Any) -> None:
        return None

    async def submit_task(self, task_id: str, text: str) -> None:
        if self._closed:
            self.host.set_task_state(task_id, TaskState.CANCELLED)
            return
        self._unfinished.append(task_id)
        self.host.set_task_state(task_id, TaskState.QUEUED)
        self._queue.append((task_id, text))
        self._wake.set()

    def on_playback(self, event: PlaybackEvent) -> None:
        task_id = self._segments.get(event.segment.id)
        if task_id is None:
            return
        if event.kind == "started":
            self._set(task_id, TaskState.SPEAKING)
        else:
            del self._segments[event.segment.id]
            self._finish(task_id, TaskState.CANCELLED if event.interrupted else TaskState.DONE)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
            self._worker = None
        for task_id in list(self._unfinished):
            self._finish(task_id, TaskState.CANCELLED)
        self._queue.clear()
        self._segments.clear()

    # -- internals ---------------------------------------------------------------------------
    def _set(self, task_id: str, state: TaskState) -> None:
        if not self._closed and task_id in self._unfinished:
            self.host.set_task_state(task_id, state)

    def _finish(self, task_id: str, state: TaskState) -> None:
        if task_id in self._unfinished:
            self.host.set_task_state(task_id, state)
            self._unfinished.remove(task_id)

    async def _run(self) -> None:
        cfg = self.config.tts
        while True:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            task_id, text = self._queue.popleft()
            try:
                pcm = await tts.synthesize_async(text, voice=cfg.voice, rate_wpm=cfg.rate,
                                                 pitch=cfg.pitch, sample_rate=SAMPLE_RATE)
            except tts.TTSError as exc:
                log.error("[%s] task %s could not be synthesised: %s", self.session_id, task_id,
                          exc.message, extra=self._extra)
                self._finish(task_id, TaskState.CANCELLED)
                continue
            if not pcm.size:
                # nothing to say (whitespace): a frame of silence keeps the task in its turn, as an
                # empty segment would end at once, before the tasks queued ahead of it
                pcm = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
            await self._speak(task_id, pcm)

    async def _speak(self, task_id: str, pcm: np.ndarray) -> None:
        speech = self.host.speech
        segment = speech.open(task_id)
        self._segments[segment.id] = task_id
        try:
            for i in range(0, pcm.size, WRITE_CHUNK):
                if speech.open_segment is not segment:
                    return    # cleared while we were writing: the segment ended interrupted
                if await speech.write(pcm[i:i + WRITE_CHUNK]) is None:
                    return
        except NoOpenSegment:
            return
        finally:
            if speech.open_segment is segment:
                speech.close()   # ends at once if empty (then `on_playback` marks it done)
