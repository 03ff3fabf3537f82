"""A stand-in `external` conversation engine: a real WebSocket server on 127.0.0.1:0.

It speaks the protocol of `docs/external-engine.md` from the engine's side and is driven by the
test: send a segment of PCM with a chosen chunk size and speed, interrupt, send raw frames or SDK
messages, close politely, or kill the connection. It records what facecast sends: the request
headers, the mic PCM and every JSON event with its receive time (`time.monotonic()`).

    async with ExternalEngineStandIn() as stand_in:
        config = ExternalEngineConfig(type="external", url=stand_in.url)
        ...
        await stand_in.speak(pcm, uid="r1", chunk_samples=480)
        ev = await stand_in.wait_event("avatar.speech.segment.playback.ended")
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from facecast.media.audio import SAMPLE_RATE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceivedEvent:
    time: float                 # time.monotonic() at receipt
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type"))


@dataclass
class ExternalEngineStandIn:
    path: str = "/engine"
    reject_status: int | None = None          # refuse the handshake with this HTTP status
    max_size: int | None = None
    headers: Headers | None = None            # request headers of the last connection
    mic: bytearray = field(default_factory=bytearray)
    mic_frames: list[int] = field(default_factory=list)   # byte size of each mic frame
    events: list[ReceivedEvent] = field(default_factory=list)
    raw_text: list[str] = field(default_factory=list)     # text frames that were not JSON
    connections: int = 0

    def __post_init__(self) -> None:
        self._server: Server | None = None
        self._conn: ServerConnection | None = None
        self._connected = asyncio.Event()
        self._disconnected = asyncio.Event()
        self._changed = asyncio.Condition()
        self.port = 0

    # -- server ------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}{self.path}"

    async def start(self) -> None:
        self._server = await serve(self._handler, "127.0.0.1", 0, max_size=self.max_size,
                                   compression=None, process_request=self._process_request,
                                   ping_interval=None, close_timeout=1.0, logger=logger)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> ExternalEngineStandIn:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        self.headers = request.headers
        if self.reject_status is not None:
            return conn.respond(self.reject_status, "refused by the stand-in\n")
        return None

    async def _handler(self, conn: ServerConnection) -> None:
        self._conn = conn
        self.connections += 1
        self._disconnected.clear()
        self._connected.set()
        try:
            async for message in conn:
                now = time.monotonic()
                if isinstance(message, bytes):
                    self.mic += message
                    self.mic_frames.append(len(message))
                else:
                    try:
                        data = json.loads(message)
                    except ValueError:
                        self.raw_text.append(message)
                        continue
                    self.events.append(ReceivedEvent(now, data))
                async with self._changed:
                    self._changed.notify_all()
        except ConnectionClosed:
            pass
        finally:
            self._connected.clear()
            self._disconnected.set()
            async with self._changed:
                self._changed.notify_all()

    # -- waiting on what facecast sent -------------------------------------------------------
    async def wait_connected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def wait_disconnected(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._disconnected.wait(), timeout)

    async def wait_until(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(predicate)
        await asyncio.wait_for(_wait(), timeout)

    async def wait_event(self, type_: str, timeout: float = 5.0, *, after: int = 0,
                         **fields: Any) -> ReceivedEvent:
        """The first event of `type_` (with matching `fields`) at index >= `after`."""
        def find() -> ReceivedEvent | None:
            for ev in self.events[after:]:
                if ev.type == type_ and all(ev.data.get(k) == v for k, v in fields.items()):
                    return ev
            return None
        await self.wait_until(lambda: find() is not None, timeout)
        found = find()
        assert found is not None
        return found

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [ev.data for ev in self.events if ev.type in types]

    def mic_pcm(self) -> np.ndarray:
        usable = len(self.mic) - len(self.mic) % 2
        return np.frombuffer(bytes(self.mic[:usable]), dtype="<i2")

    # -- scripting the engine side -----------------------------------------------------------
    @property
    def connection(self) -> ServerConnection:
        if self._conn is None:
            raise RuntimeError("facecast is not connected to the stand-in")
        return self._conn

    async def send_json(self, data: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(data))

    async def send_raw(self, frame: str | bytes) -> None:
        await self.connection.send(frame)

    async def create_segment(self, uid: str | None) -> None:
        await self.send_json({"type": "avatar.speech.segment.create", "segment_uid": uid})

    async def close_segment(self, uid: str | None = None) -> None:
        await self.send_json({"type": "avatar.speech.segment.close", "segment_uid": uid})

    async def interrupt(self) -> None:
        await self.send_json({"type": "avatar.speech.interrupt"})

    async def send_sdk_message(self, data: Any) -> None:
        await self.send_json({"type": "sdk.message.send", "data": data})

    async def send_audio(self, pcm: np.ndarray | bytes, *, chunk_bytes: int = 960,
                         speed: float | None = None) -> None:
        """Binary frames of `chunk_bytes` (odd sizes allowed). `speed=None` sends as fast as the
        socket takes them; `speed=1.0` paces them at real time, 2.0 twice as fast, ..."""
        data = pcm if isinstance(pcm, bytes) else pcm.astype("<i2").tobytes()
        start = time.monotonic()
        for offset in range(0, len(data), chunk_bytes):
            if speed is not None:
                due = start + offset / 2 / SAMPLE_RATE / speed
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            await self.connection.send(data[offset:offset + chunk_bytes])

    async def speak(self, pcm: np.ndarray | bytes, uid: str | None = "r1", *,
                    chunk_bytes: int = 960, speed: float | None = None,
                    close: bool = True) -> None:
        """One segment: create, the audio, close."""
        await self.create_segment(uid)
        await self.send_audio(pcm, chunk_bytes=chunk_bytes, speed=speed)
        if close:
            await self.close_segment(uid)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """A polite close (the engine ends the conversation)."""
        await self.connection.close(code, reason)

    async def close_without_code(self) -> None:
        """A close frame with no status code (facecast sees code 1005)."""
        await self.connection.close(None)  # type: ignore[arg-type]  # websockets sends no code

    def kill(self) -> None:
        """Drop the TCP connection with no close frame (the engine process died)."""
        self.connection.transport.abort()

    def freeze(self) -> None:
        """Stop reading the socket: pings go unanswered, facecast's frames pile up."""
        self.connection.transport.pause_reading()
