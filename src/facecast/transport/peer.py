"""One browser (or any WebRTC client) joined to a live session: `WebRTCPeer`.

It owns an aiortc `RTCPeerConnection`, the outbound avatar tracks fed by its `PeerSink`, the
`events` data channel (JSON both ways) and the task that pumps the user's microphone into
`runtime.push_mic`. It implements the session runtime's `Peer` protocol (`peer_id`, `sink`,
`send_event`, `close`).

Who ends a peer:
- the runtime, at session end: `close()` (after it sent `session_ended`; we let the data
  channel drain first so the page sees it);
- the client: `DELETE /_sdk/v0/webrtc/{peer_id}`, or the connection failing/closing, or never
  connecting: `leave()` → `manager.leave()` then `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

import av
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcdatachannel import RTCDataChannel
from aiortc.rtcrtpsender import RTCRtpSender

from facecast.aio import cancel_and_wait
from facecast.errors import FacecastError, InvalidRequest
from facecast.media.audio import to_mono
from facecast.transport.patches import IcePolicy, ice_policy
from facecast.transport.tracks import AvatarAudioTrack, AvatarVideoTrack, PeerSink

log = logging.getLogger(__name__)

EVENTS_LABEL = "events"
MAX_PENDING_EVENTS = 256
CONNECT_TIMEOUT_S = 30.0
CLOSE_DRAIN_S = 1.0


class Runtime(Protocol):
    """The part of `facecast.sessions.runtime.SessionRuntime` the transport uses."""

    session_id: str
    background: str
    width: int
    height: int

    def push_mic(self, pcm: np.ndarray, sample_rate: int, peer_id: str | None = None) -> None: ...

    def on_sdk_message(self, data: Any) -> None: ...

    async def task_from_sdk(self, text: str) -> str: ...


class SessionManager(Protocol):
    def verify_token(self, token: str) -> str: ...

    async def join(self, session_id: str, peer: Any) -> Runtime: ...

    async def leave(self, session_id: str, peer: Any) -> None: ...


class WebRTCPeer:
    def __init__(self, session_id: str, manager: SessionManager, config: RTCConfiguration,
                 policy: IcePolicy, *, on_closed: Callable[[WebRTCPeer], None] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT_S) -> None:
        self.peer_id = "peer_" + secrets.token_urlsafe(12)
        self.session_id = session_id
        self.sink = PeerSink(session_id)
        self.runtime: Runtime | None = None
        self.created_at = time.monotonic()
        self.connected_at: float | None = None
        self._manager = manager
        self._policy = policy
        self._on_closed = on_closed
        self._connect_timeout = connect_timeout
        self._pc = RTCPeerConnection(config)
        self._audio = AvatarAudioTrack(self.sink)
        self._video = AvatarVideoTrack(self.sink)
        self._channel: RTCDataChannel | None = None
        self._pending: deque[str] = deque(maxlen=MAX_PENDING_EVENTS)
        self._remote_tracks: list[MediaStreamTrack] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing: asyncio.Task[None] | None = None
        self._left = False
        self.mic_frames = 0
        self._pc.on("datachannel", self._on_datachannel)
        self._pc.on("track", self._on_track)
        self._pc.on("connectionstatechange", self._on_connection_state)

    @property
    def extra(self) -> dict[str, str]:
        return {"session_id": self.session_id, "peer_id": self.peer_id}

    @property
    def connection_state(self) -> str:
        return self._pc.connectionState

    @property
    def closed(self) -> bool:
        return self._closing is not None

    # -- signalling ---------------------------------------------------------------------------
    async def accept_offer(self, sdp: str) -> None:
        """Apply the client's offer and attach our tracks. Raises `InvalidRequest` on bad SDP."""
        try:
            await self._pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidRequest(f"invalid SDP offer: {exc}", field="sdp") from exc
        except Exception as exc:  # aiortc raises its own InvalidStateError/InternalError
            raise InvalidRequest(f"unusable SDP offer: {exc}", field="sdp") from exc
        kinds = {t.kind for t in self._pc.getTransceivers()}
        if "video" not in kinds:
            raise InvalidRequest("the offer must receive video (add a recvonly video transceiver)",
                                 field="sdp")
        for transceiver in self._pc.getTransceivers():
            if transceiver.kind == "video":
                caps = RTCRtpSender.getCapabilities("video")
                vp8 = [c for c in caps.codecs if c.mimeType.lower() in ("video/vp8", "video/rtx")]
                transceiver.setCodecPreferences(vp8)
        self._pc.addTrack(self._video)
        if "audio" in kinds:
            self._pc.addTrack(self._audio)

    async def answer(self) -> str:
        answer = await self._pc.createAnswer()
        with ice_policy(self._policy):
            await self._pc.setLocalDescription(answer)  # gathers every candidate (non-trickle)
        self._start(self._watch_connect(), "connect-timeout")
        return self._pc.localDescription.sdp

    def attach(self, runtime: Runtime) -> None:
        """Joined: start feeding the microphone to the runtime."""
        self.runtime = runtime
        for track in self._remote_tracks:
            self._start_pump(track)

    # -- events channel -----------------------------------------------------------------------
    def send_event(self, event: dict[str, Any]) -> None:
        if self._closing is not None and self._channel is None:
            return
        text = json.dumps(event, separators=(",", ":"), default=str)
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(text)
                return
            except Exception as exc:  # the transport went away under us
                log.debug("event not sent: %r", exc, extra=self.extra)
                return
        if len(self._pending) == self._pending.maxlen:
            log.warning("event queue full, dropping the oldest", extra=self.extra)
        self._pending.append(text)

    def _on_datachannel(self, channel: RTCDataChannel) -> None:
        if channel.label != EVENTS_LABEL:
            log.info("ignoring data channel %r", channel.label, extra=self.extra)
            return
        self._channel = channel
        channel.on("message", self._on_message)
        channel.on("close", self._on_channel_close)
        if channel.readyState == "open":
            self._flush_pending()
        else:
            channel.on("open", self._flush_pending)

    def _on_channel_close(self) -> None:
        """The page went away (tab closed: Chromium aborts SCTP at once, ICE would take 30 s)."""
        if self._closing is None:
            log.info("events channel closed by the client", extra=self.extra)
            asyncio.get_running_loop().create_task(self.leave(), name=f"{self.peer_id}-leave")

    def _flush_pending(self) -> None:
        channel = self._channel
        while self._pending and channel is not None and channel.readyState == "open":
            channel.send(self._pending.popleft())

    def _on_message(self, message: str | bytes) -> None:
        try:
            msg = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            self.send_event({"type": "error", "code": "invalid_message",
                             "message": "events carry JSON", "session_id": self.session_id})
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "sdk.message":
            if self.runtime is not None:
                self.runtime.on_sdk_message(msg.get("data"))
        elif kind == "ping":
            self.send_event({"type": "pong", "t": msg.get("t"), "server_time": time.time()})
        elif kind == "task":
            if self._closing is None:
                self._tasks = [t for t in self._tasks if not t.done()]
                self._start(self._create_task(msg.get("text"), msg.get("request_id")), "task")
        else:
            self.send_event({"type": "error", "code": "invalid_message",
                             "message": f"unknown message type {kind!r}",
                             "session_id": self.session_id})

    async def _create_task(self, text: Any, request_id: Any) -> None:
        """`{"type": "task", "text", "request_id"}` from the page (`FacecastAvatar.task()`):
        answered with `task_created {request_id, task_id}` or `error {code, message, session_id,
        request_id}`. The task's progress then arrives as `task_state` events."""
        try:
            if self.runtime is None:
                raise FacecastError("not joined to the session yet")
            task_id = await self.runtime.task_from_sdk(text)
        except FacecastError as exc:
            self.send_event({"type": "error", "code": exc.code, "message": exc.message,
                             "session_id": self.session_id, "request_id": request_id})
            return
        except Exception:
            log.exception("task from the page failed", extra=self.extra)
            self.send_event({"type": "error", "code": "internal_error",
                             "message": "the task could not be created",
                             "session_id": self.session_id, "request_id": request_id})
            return
        self.send_event({"type": "task_created", "request_id": request_id, "task_id": task_id})

    # -- microphone ---------------------------------------------------------------------------
    def _on_track(self, track: MediaStreamTrack) -> None:
        self._remote_tracks.append(track)
        if self.runtime is not None:
            self._start_pump(track)

    def _start_pump(self, track: MediaStreamTrack) -> None:
        self._start(self._pump(track), f"pump-{track.kind}")

    async def _pump(self, track: MediaStreamTrack) -> None:
        """Decoded mic frames → mono int16 at their own rate → runtime. Video is drained."""
        runtime = self.runtime
        assert runtime is not None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            if track.kind != "audio" or not isinstance(frame, av.AudioFrame):
                continue
            samples = frame.to_ndarray()
            channels = len(frame.layout.channels)
            if samples.dtype != np.int16:
                samples = (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)
            if samples.shape[0] == channels and channels > 1:   # planar
                samples = samples.T
            pcm = to_mono(np.ascontiguousarray(samples).reshape(-1), channels)
            self.mic_frames += 1
            runtime.push_mic(pcm, frame.sample_rate, self.peer_id)

    # -- lifecycle ----------------------------------------------------------------------------
    def _start(self, coro: Any, name: str) -> None:
        task = asyncio.create_task(coro, name=f"{self.peer_id}-{name}")
        self._tasks.append(task)

    def _on_connection_state(self) -> None:
        state = self._pc.connectionState
        log.info("connection %s", state, extra=self.extra)
        if state == "connected" and self.connected_at is None:
            self.connected_at = time.monotonic()
        if state in ("failed", "closed") and self._closing is None:
            asyncio.get_running_loop().create_task(self.leave(), name=f"{self.peer_id}-leave")

    async def _watch_connect(self) -> None:
        await asyncio.sleep(self._connect_timeout)
        if self.connected_at is None and self._closing is None:
            log.warning("never connected, leaving", extra=self.extra)
            asyncio.get_running_loop().create_task(self.leave(), name=f"{self.peer_id}-leave")

    async def leave(self) -> None:
        """The client went away: detach from the session, then close."""
        if not self._left and self.runtime is not None and self._closing is None:
            self._left = True
            try:
                await self._manager.leave(self.session_id, self)
            except Exception:
                log.exception("manager.leave failed", extra=self.extra)
        await self.close()

    async def close(self) -> None:
        """Tear down (idempotent). Lets the events channel drain first (session_ended)."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(
                self._close(), name=f"{self.peer_id}-close")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        channel = self._channel
        if channel is not None and channel.readyState == "open":
            if channel.bufferedAmount > 0:
                drained = asyncio.Event()
                channel.bufferedAmountLowThreshold = 0
                channel.on("bufferedamountlow", drained.set)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(drained.wait(), CLOSE_DRAIN_S)
            await asyncio.sleep(0.05)   # the last chunk still needs its SCTP round trip
        self.sink.close()
        await cancel_and_wait(self._tasks, log)
        try:
            await self._pc.close()
        except Exception:
            log.exception("closing the peer connection failed", extra=self.extra)
        self._channel = None
        log.info("peer closed", extra=self.extra)
        if self._on_closed is not None:
            self._on_closed(self)
