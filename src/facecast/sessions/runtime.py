"""The live part of a session: engine connection, playout, renderer, media clock, peers.

Created by the manager on the first user join and stopped exactly once at session end. It is
the engine's `EngineHost`: agent speech goes into `speech` (a `SpeechBuffer`), the media clock
(`AvatarStream`) turns it into lip-synced frames for every peer, and playback events become
`avatar_started_speaking` / `avatar_ended_speaking` events for the page and progress reports
for the engine. Rendering runs in the shared executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from facecast.aio import cancel_and_wait
from facecast.engines import create_engine, speech_mode_for
from facecast.errors import EngineConnectionError, InvalidRequest
from facecast.media.avstream import AvatarStream, AVSink, FrameRenderer
from facecast.media.playout import PlaybackEvent, SpeechBuffer
from facecast.sessions.state import EndReason, TaskState

if TYPE_CHECKING:
    from facecast.config import Settings
    from facecast.engines.base import Engine
    from facecast.sessions.manager import LiveSession, SessionManager

log = logging.getLogger(__name__)

# Cartesia paces its audio at about real time; ride over network jitter this many empty
# 40 ms reads before calling a segment finished.
AUTO_DRAIN_GRACE_READS = 5
PEER_CLOSE_TIMEOUT = 5.0
END_AFTER_SPEECH_LIMIT = 60.0


class Peer(Protocol):
    """One joined page (a WebRTC peer connection), as the transport provides it."""

    peer_id: str
    sink: AVSink

    def send_event(self, event: dict[str, Any]) -> None: ...

    async def close(self) -> None: ...


RendererFactory = Callable[[], FrameRenderer]


class SessionRuntime:
    def __init__(self, live: LiveSession, manager: SessionManager, *, settings: Settings,
                 renderer_factory: RendererFactory, executor: Executor,
                 width: int, height: int) -> None:
        self.session_id = live.id
        self.background = live.spec.background
        self.width = width
        self.height = height
        self._manager = manager
        self._renderer_factory = renderer_factory
        self._executor = executor
        self.speech = SpeechBuffer(
            mode=speech_mode_for(live.spec.engine),
            drain_grace_reads=AUTO_DRAIN_GRACE_READS if speech_mode_for(live.spec.engine) == "auto" else 0)
        self.speech.subscribe(self._on_playback)
        self.engine: Engine = create_engine(live.spec.engine, self, settings)
        self.stream: AvatarStream | None = None
        self._peers: dict[str, Peer] = {}
        self._mic_peers: set[str] = set()   # peers that have sent microphone audio
        self._tasks: list[asyncio.Task[Any]] = []
        self._engine_ready = False
        self._engine_starting: asyncio.Task[None] | None = None
        self._stopped = False
        self._log = logging.LoggerAdapter(log, {"session_id": self.session_id})

    # -- tasks this runtime owns -------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name}-{self.session_id}")
        self._tasks.append(task)
        return task

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            renderer = await loop.run_in_executor(self._executor, self._renderer_factory)
        except Exception as exc:
            self._log.exception("could not open the renderer")
            self.end_session(EndReason.ENGINE_ERROR, error_code="internal_error",
                             message=f"renderer failed to start: {exc}")
            return
        if self._stopped:
            return
        self.stream = AvatarStream(self.speech, renderer, self._executor, session_id=self.session_id)
        for peer in self._peers.values():
            self.stream.add_sink(peer.sink)
        self._spawn(self.stream.run(), "media-clock")
        # an owned task, so that a session ending mid-handshake cancels the connect (see stop())
        self._engine_starting = asyncio.get_running_loop().create_task(
            self.engine.start(), name=f"engine-start-{self.session_id}")
        try:
            await self._engine_starting
        except asyncio.CancelledError:
            if self._stopped and self._engine_starting.cancelled():
                return  # the session ended while connecting: stop() has cleaned up
            raise
        except EngineConnectionError as exc:
            self._log.warning("engine connection failed: %s", exc.message)
            self.end_session(EndReason.ENGINE_ERROR, error_code="engine_error", message=exc.message)
            return
        except Exception as exc:
            self._log.exception("engine failed to start")
            self.end_session(EndReason.ENGINE_ERROR, error_code="engine_error",
                             message=f"engine failed to start: {type(exc).__name__}")
            return
        self._engine_ready = not self._stopped

    async def stop(self, reason: EndReason, error_code: str | None, message: str | None) -> None:
        if self._stopped:
            return
        self._stopped = True
        if error_code:
            self.send_to_sdk({"type": "error", "code": error_code, "message": message or error_code,
                              "session_id": self.session_id})
        self.send_to_sdk({"type": "session_ended", "reason": reason.value, "session_id": self.session_id})
        peers = list(self._peers.values())
        self._peers.clear()
        if peers:
            closing = [asyncio.ensure_future(p.close()) for p in peers]
            done, late = await asyncio.wait(closing, timeout=PEER_CLOSE_TIMEOUT)
            for fut in late:  # a peer that hangs in close() is abandoned, not leaked
                fut.cancel()
            if late:
                await asyncio.wait(late)
            for fut in done:
                if not fut.cancelled() and fut.exception() is not None:
                    self._log.warning("peer close failed: %r", fut.exception())
        starting = self._engine_starting
        if starting is not None and not starting.done():
            starting.cancel()  # ended mid-handshake: the engine aborts its half-open socket
            await asyncio.wait({starting})
        try:
            await self.engine.close()
        except Exception:
            self._log.exception("engine close failed")
        await cancel_and_wait(self._tasks, self._log)
        self._tasks.clear()

    # -- peers -------------------------------------------------------------------------------
    def attach_peer(self, peer: Peer) -> None:
        self._peers[peer.peer_id] = peer
        if self.stream is not None:
            self.stream.add_sink(peer.sink)

    def detach_peer(self, peer: Peer) -> None:
        self._peers.pop(peer.peer_id, None)
        self._mic_peers.discard(peer.peer_id)
        if self.stream is not None:
            self.stream.remove_sink(peer.sink)

    def push_mic(self, pcm: np.ndarray, sample_rate: int, peer_id: str | None = None) -> None:
        """User audio from `peer_id`. The engine hears one microphone: that of the most recently
        joined peer that sends one (a rejoin takes over at once; the old connection's last
        frames are not mixed in). Audio from other peers is dropped."""
        if not self._engine_ready:
            return
        if peer_id is not None:
            if peer_id not in self._peers:   # left; its pump runs on until the peer closes
                return
            self._mic_peers.add(peer_id)
            active = next((p for p in reversed(self._peers) if p in self._mic_peers), peer_id)
            if active != peer_id:
                return
        self.engine.push_mic(pcm, sample_rate)

    def on_sdk_message(self, data: Any) -> None:
        if self._engine_ready:
            self.engine.on_sdk_message(data)

    async def submit_task(self, task_id: str, text: str) -> None:
        await self.engine.submit_task(task_id, text)

    async def task_from_sdk(self, text: str) -> str:
        """A text task sent by the page (`FacecastAvatar.task(text)`): recorded like one from
        POST /tasks and returns its id. Raises `FacecastError` (e.g. empty text, session ended)."""
        if not isinstance(text, str) or not text.strip() or len(text) > 5000 or "\x00" in text:
            raise InvalidRequest("task text must be 1-5000 characters", field="text")
        return await self._manager.add_task(self.session_id, text)

    # -- EngineHost ----------------------------------------------------------------------------
    def send_to_sdk(self, event: dict[str, Any]) -> None:
        for peer in list(self._peers.values()):
            try:
                peer.send_event(event)
            except Exception:
                self._log.exception("sending an event to peer %s failed", peer.peer_id)

    def end_session(self, reason: EndReason, *, error_code: str | None = None,
                    message: str | None = None, after_speech: bool = False) -> None:
        if self._stopped:
            return
        if after_speech and not self.speech.is_idle():
            self._spawn(self._end_after_speech(reason, error_code, message), "end-after-speech")
            return
        self._manager.request_end(self.session_id, reason, error_code=error_code, message=message)

    async def _end_after_speech(self, reason: EndReason, error_code: str | None,
                                message: str | None) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(END_AFTER_SPEECH_LIMIT):
                await self.speech.wait_idle()
        self._manager.request_end(self.session_id, reason, error_code=error_code, message=message)

    def set_task_state(self, task_id: str, state: TaskState) -> None:
        self._manager.set_task_state(self.session_id, task_id, state)
        self.send_to_sdk({"type": "task_state", "task_id": task_id, "state": state.value})

    # -- playback ------------------------------------------------------------------------------
    def _on_playback(self, event: PlaybackEvent) -> None:
        seg = event.segment
        if event.kind == "started":
            self.send_to_sdk({"type": "avatar_started_speaking", "segment_id": seg.id,
                              "phrase_id": seg.id})
        elif seg.started:
            self.send_to_sdk({"type": "avatar_ended_speaking", "segment_id": seg.id,
                              "phrase_id": seg.id, "interrupted": event.interrupted,
                              "played_duration": round(event.played_duration, 3)})
        if self._engine_ready:
            try:
                self.engine.on_playback(event)
            except Exception:
                self._log.exception("engine.on_playback failed")
