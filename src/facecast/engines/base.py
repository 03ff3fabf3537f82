"""The conversation-engine contract.

An engine is the voice agent's side of a live session. The session runtime creates it when the
first user joins, calls `start()` (connect + handshake), feeds it the user's microphone, and gives
it an `EngineHost`: the playout buffer to write agent speech into, a way to send events to the
Web SDK, and a way to end the session. Playback progress comes back through `on_playback`.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from facecast.media.playout import PlaybackEvent, SpeechBuffer
from facecast.sessions.state import EndReason, TaskState


class EngineHost(Protocol):
    @property
    def session_id(self) -> str: ...

    @property
    def speech(self) -> SpeechBuffer:
        """Where agent speech goes (int16 mono 24 kHz)."""
        ...

    def send_to_sdk(self, event: dict[str, Any]) -> None:
        """Send a JSON event to every connected page (data channel `events`)."""
        ...

    def end_session(self, reason: EndReason, *, error_code: str | None = None,
                    message: str | None = None, after_speech: bool = False) -> None:
        """Ask for the session to end. With `after_speech`, queued speech plays out first.
        `error_code`/`message` reach the SDK as an `error` event before `session_ended`."""
        ...

    def set_task_state(self, task_id: str, state: TaskState) -> None:
        """Record a task's progress (visible in GET /api/v1/sessions/{id})."""
        ...


class Engine(Protocol):
    async def start(self) -> None:
        """Connect and complete the handshake. Raises `EngineConnectionError` on failure."""
        ...

    def push_mic(self, pcm: np.ndarray, sample_rate: int) -> None:
        """User audio, int16 mono at `sample_rate`. Must not block; bounded internally."""
        ...

    async def submit_task(self, task_id: str, text: str) -> None:
        """A text task from POST /tasks. Engines that do not speak text record it only."""
        ...

    def on_playback(self, event: PlaybackEvent) -> None:
        """Segment playback started/ended (with played duration, interrupted flag)."""
        ...

    def on_sdk_message(self, data: Any) -> None:
        """A custom message from the page."""
        ...

    async def close(self) -> None:
        """Disconnect (idempotent). Must not call `end_session`."""
        ...
