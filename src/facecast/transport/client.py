"""A plain aiortc client of the `/_sdk/v0/webrtc` contract (no browser, no Web SDK).

It is what the Web SDK does, in Python: create an `events` data channel, a recvonly video
transceiver and a sendrecv audio transceiver carrying the microphone, gather every candidate,
POST the offer with the session token, apply the answer. Used by the transport tests and the
bench, and a reference for non-browser integrations.

    client = FacecastClient("http://127.0.0.1:8000", token, mic=PcmTrack(pcm, 48000))
    await client.connect()
    ...  client.video_frames, client.audio (received PCM), client.events
    await client.close()           # DELETE /_sdk/v0/webrtc/{peer_id}
"""

from __future__ import annotations

import asyncio
import contextlib
import fractions
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import av
import httpx
import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from facecast.transport import patches
from facecast.transport.patches import IcePolicy, ice_policy

log = logging.getLogger(__name__)


class PcmTrack(MediaStreamTrack):
    """A paced microphone: plays `pcm` (mono int16) in 20 ms frames, then silence."""

    kind = "audio"

    def __init__(self, pcm: np.ndarray | None = None, sample_rate: int = 48_000) -> None:
        super().__init__()
        self.rate = sample_rate
        self.chunk = sample_rate // 50
        self._pcm = pcm if pcm is not None else np.zeros(0, np.int16)
        self._pos = 0
        self._n = 0
        self._start: float | None = None
        self.started_at: float | None = None   # monotonic time the first sample went out

    def play(self, pcm: np.ndarray) -> None:
        """Replace what is left to play (starts at the next frame)."""
        self._pcm, self._pos = pcm, 0

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
            self.started_at = self._start
        due = self._start + self._n * self.chunk / self.rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        out = np.zeros(self.chunk, np.int16)
        part = self._pcm[self._pos:self._pos + self.chunk]
        out[:part.size] = part
        self._pos += part.size
        frame = av.AudioFrame.from_ndarray(out.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._n * self.chunk
        frame.time_base = fractions.Fraction(1, self.rate)
        self._n += 1
        return frame


@dataclass
class ReceivedFrame:
    t: float              # monotonic arrival (decoded) time
    pts: int
    image: np.ndarray     # rgb24, H x W x 3


class SignallingError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class FacecastClient:
    def __init__(self, base_url: str, token: str, *, mic: MediaStreamTrack | None = None,
                 policy: IcePolicy | None = None, keep_frames: int = 50) -> None:
        patches.install()
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.mic = mic or PcmTrack()
        self.policy = policy or IcePolicy(loopback_only=True)
        self.keep_frames = keep_frames
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.peer_id: str | None = None
        self.answer: dict[str, Any] = {}
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.video_frames: list[ReceivedFrame] = []
        self.frame_times: list[float] = []
        self.audio_chunks: list[tuple[float, np.ndarray]] = []   # (t, mono int16 at 48 kHz)
        self._tasks: list[asyncio.Task[None]] = []
        self._event_waiters: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        self.channel = self.pc.createDataChannel("events")
        self.channel.on("message", self._on_message)
        self.pc.on("track", self._on_track)

    async def connect(self, timeout: float = 10.0) -> None:
        self.pc.addTransceiver("video", direction="recvonly")
        self.pc.addTransceiver(self.mic, direction="sendrecv")
        offer = await self.pc.createOffer()
        with ice_policy(self.policy):
            await self.pc.setLocalDescription(offer)
        answer = await self.post_offer(self.pc.localDescription.sdp)
        self.answer = answer
        self.peer_id = answer["peer_id"]
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        deadline = time.monotonic() + timeout
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline or self.pc.connectionState in ("failed", "closed"):
                raise TimeoutError(f"connection {self.pc.connectionState}")
            await asyncio.sleep(0.02)

    async def post_offer(self, sdp: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{self.base_url}/_sdk/v0/webrtc",
                                json={"sdp": sdp, "type": "offer"},
                                headers={"X-Session-Token": self.token}, timeout=15)
        if r.status_code != 200:
            raise SignallingError(r.status_code, r.json())
        return dict(r.json())

    def send(self, message: dict[str, Any]) -> None:
        self.channel.send(json.dumps(message))

    async def close(self, *, delete: bool = True) -> None:
        if delete and self.peer_id is not None:
            async with httpx.AsyncClient() as http:
                with contextlib.suppress(httpx.HTTPError):
                    await http.delete(f"{self.base_url}/_sdk/v0/webrtc/{self.peer_id}",
                                      headers={"X-Session-Token": self.token}, timeout=5)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.pc.close()

    # -- received media and events ------------------------------------------------------------
    def _on_message(self, message: str | bytes) -> None:
        event = json.loads(message)
        self.events.append((time.monotonic(), event))
        for kind, fut in list(self._event_waiters):
            if event.get("type") == kind and not fut.done():
                fut.set_result(event)
                self._event_waiters.remove((kind, fut))

    async def wait_event(self, kind: str, timeout: float = 5.0, *,
                         since: float | None = None) -> dict[str, Any]:
        """The next event of type `kind`, or the first one received after `since`."""
        if since is not None:
            for t, event in self.events:
                if t >= since and event.get("type") == kind:
                    return event
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._event_waiters.append((kind, fut))
        return await asyncio.wait_for(fut, timeout)

    def event_types(self) -> list[str]:
        return [e["type"] for _, e in self.events]

    def _on_track(self, track: MediaStreamTrack) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(
            self._consume(track), name=f"client-{track.kind}"))

    async def _consume(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            now = time.monotonic()
            if isinstance(frame, av.VideoFrame):
                self.frame_times.append(now)
                self.video_frames.append(ReceivedFrame(now, frame.pts or 0,
                                                       frame.to_ndarray(format="rgb24")))
                del self.video_frames[:-self.keep_frames]
            elif isinstance(frame, av.AudioFrame):
                arr = frame.to_ndarray().reshape(-1)
                channels = len(frame.layout.channels)
                mono = arr.reshape(-1, channels).mean(axis=1).astype(np.int16)
                self.audio_chunks.append((now, mono))

    def received_audio(self, since: float = 0.0) -> np.ndarray:
        parts = [p for t, p in self.audio_chunks if t >= since]
        return np.concatenate(parts) if parts else np.zeros(0, np.int16)
