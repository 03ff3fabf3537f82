"""A small in-memory session manager that speaks the runtime's `join`/`leave` API.

For transport tests, the transport bench and browser harnesses that must run without the real
session manager, engines and renderer: each session is a real `SpeechBuffer` drained by a real
`AvatarStream` that renders a cheap test pattern (a "mouth" bar whose height follows the speech
level, and a frame counter). Tests drive it as an engine would: `runtime.speech.write_nowait()`
for agent speech, `runtime.speech.clear()` for a barge-in, `manager.end()` to end a session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from facecast.errors import InvalidSessionState, Unauthorized
from facecast.media.avstream import AvatarStream
from facecast.media.playout import PlaybackEvent, SpeechBuffer

log = logging.getLogger(__name__)

MOUTH = (slice(300, 420), slice(176, 336))   # rows, cols of the mouth box in a 512x512 frame


class PatternRenderer:
    """512x512 test pattern: grey face, mouth bar ∝ speech RMS, 10-bit frame counter strip."""

    lookahead_frames = 2

    def __init__(self, width: int = 512, height: int = 512, *, transparent: bool = False) -> None:
        self.width, self.height, self.transparent = width, height, transparent
        self.index = 0
        base = np.full((height, width, 4 if transparent else 3), 96, dtype=np.uint8)
        if transparent:
            base[..., 3] = 0
            base[64:height - 64, 96:width - 96, 3] = 255   # an opaque "head" in a clear frame
        self._base = base

    def render(self, pcm: np.ndarray, lookahead: np.ndarray) -> np.ndarray:
        img = self._base.copy()
        level = float(np.sqrt(np.mean(pcm.astype(np.float32) ** 2))) if pcm.size else 0.0
        rows, cols = MOUTH
        opening = int(min(1.0, level / 6000.0) * (rows.stop - rows.start))
        img[rows, cols, :3] = 40
        if opening:
            img[rows.start:rows.start + opening, cols, :3] = 230
        for bit in range(10):   # frame counter: white/black 16-px cells along the top
            on = (self.index >> bit) & 1
            img[0:16, bit * 16:(bit + 1) * 16, :3] = 255 if on else 0
            if self.transparent:
                img[0:16, bit * 16:(bit + 1) * 16, 3] = 255
        self.index += 1
        return img

    def reset(self) -> None:
        pass


@dataclass(eq=False)
class StandinRuntime:
    session_id: str
    token: str
    background: str = "default"
    width: int = 512
    height: int = 512
    speech: SpeechBuffer = field(init=False)
    stream: AvatarStream = field(init=False)
    peers: list[Any] = field(default_factory=list)
    mic: list[tuple[float, np.ndarray, int]] = field(default_factory=list)   # (t, pcm, rate)
    sdk_messages: list[Any] = field(default_factory=list)
    joins: int = 0
    leaves: int = 0
    ended: str | None = None
    absent_since: float | None = None
    executor: ThreadPoolExecutor | None = None
    _clock: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self.speech = SpeechBuffer(mode="auto", drain_grace_reads=2)
        self.renderer = PatternRenderer(self.width, self.height,
                                        transparent=self.background == "transparent")
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"render-{self.session_id}")
        self.stream = AvatarStream(self.speech, self.renderer, self.executor,
                                   session_id=self.session_id)
        self.speech.subscribe(self._on_playback)

    def push_mic(self, pcm: np.ndarray, sample_rate: int, peer_id: str | None = None) -> None:
        self.mic.append((time.monotonic(), pcm, sample_rate))
        if len(self.mic) > 3000:
            del self.mic[:1000]

    def on_sdk_message(self, data: Any) -> None:
        self.sdk_messages.append(data)

    def mic_audio(self) -> np.ndarray:
        return np.concatenate([p for _, p, _ in self.mic]) if self.mic else np.zeros(0, np.int16)

    def broadcast(self, event: dict[str, Any]) -> None:
        for peer in list(self.peers):
            peer.send_event(event)

    def _on_playback(self, event: PlaybackEvent) -> None:
        if event.kind == "started":
            self.broadcast({"type": "avatar_started_speaking", "segment_id": event.segment.id})
        else:
            self.broadcast({"type": "avatar_ended_speaking", "segment_id": event.segment.id,
                            "interrupted": event.interrupted})


class StandinManager:
    """verify_token / join / leave like the real manager; sessions live in a dict."""

    def __init__(self) -> None:
        self.sessions: dict[str, StandinRuntime] = {}
        self._tokens: dict[str, str] = {}

    def create(self, *, background: str = "default") -> StandinRuntime:
        sid = "sess_" + secrets.token_hex(6)
        token = "tok_" + secrets.token_urlsafe(16)
        rt = StandinRuntime(sid, token, background=background)
        rt.absent_since = time.monotonic()
        self.sessions[sid] = rt
        self._tokens[token] = sid
        return rt

    def verify_token(self, token: str) -> str:
        sid = self._tokens.get(token)
        if sid is None:
            raise Unauthorized("invalid session token", code="invalid_token")
        if self.sessions[sid].ended is not None:
            raise InvalidSessionState("the session has ended", code="session_ended")
        return sid

    async def join(self, session_id: str, peer: Any) -> StandinRuntime:
        rt = self.sessions[session_id]
        if rt.ended is not None:
            raise InvalidSessionState("the session has ended", code="session_ended")
        rt.joins += 1
        rt.peers.append(peer)
        rt.stream.add_sink(peer.sink)
        rt.absent_since = None
        if rt._clock is None:
            rt._clock = asyncio.get_running_loop().create_task(
                rt.stream.run(), name=f"{session_id}-media-clock")
        return rt

    async def leave(self, session_id: str, peer: Any) -> None:
        rt = self.sessions[session_id]
        if peer in rt.peers:
            rt.peers.remove(peer)
            rt.stream.remove_sink(peer.sink)
            rt.leaves += 1
        if not rt.peers:
            rt.absent_since = time.monotonic()

    async def end(self, session_id: str, reason: str = "termination_command_received") -> None:
        rt = self.sessions[session_id]
        if rt.ended is not None:
            return
        rt.ended = reason
        rt.broadcast({"type": "session_ended", "reason": reason})
        for peer in list(rt.peers):
            rt.stream.remove_sink(peer.sink)
            await peer.close()
        rt.peers.clear()
        if rt._clock is not None:
            rt._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await rt._clock
            rt._clock = None
        assert rt.executor is not None
        rt.executor.shutdown(wait=False)

    async def aclose(self) -> None:
        for sid in list(self.sessions):
            await self.end(sid, "server_shutdown")
