"""The `external` engine: the product's own WebSocket drives the avatar.

facecast connects out to `url` (with the session's `headers`, which are never logged), streams the
user's mic as binary PCM16LE mono at `audio.user.sample_rate` in 20 ms frames, and plays the
engine's binary PCM16LE 24 kHz speech inside explicit segments. The wire protocol, and every
decision taken where the platform docs are silent, is in `docs/external-engine.md`.

Tasks (one owner, named, cancelled in reverse start order by `close()`):
- reader: parses engine frames; control (`interrupt`, `sdk.message.send`) acts at once, segment
  operations and audio go through an ordered op queue so that a full playout buffer never holds
  an interrupt back;
- feeder: applies queued ops to the `SpeechBuffer` (the only place that waits on backpressure);
- writer: sends our JSON events (first) and mic frames (bounded, oldest dropped) to the engine.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHeader,
    InvalidStatus,
    WebSocketException,
)

from facecast.aio import cancel_and_wait
from facecast.engines.config import ExternalEngineConfig, redact_url
from facecast.engines.wsconnect import close_bounded, connect_no_redirects
from facecast.errors import EngineConnectionError
from facecast.media.audio import MIC_RESAMPLE_QUALITY, SAMPLE_RATE, Chunker, Resampler
from facecast.media.playout import NoOpenSegment, PlaybackEvent, Segment
from facecast.sessions.state import EndReason, TaskState

if TYPE_CHECKING:
    from facecast.config import Settings
    from facecast.engines.base import EngineHost

log = logging.getLogger(__name__)

SEGMENT_ERROR = "avatar.speech.segment.error"
TYPE_ERROR = "message.type.error"
JSON_ERROR = "json.parsing.error"

MIC_FRAME_MS = 20
MAX_FRAME_BYTES = 8 * 1024 * 1024          # ~174 s of 24 kHz audio in one frame; larger → 1009
WRITE_CHUNK = SAMPLE_RATE                  # audio enters the playout buffer in <= 1 s pieces
MAX_PENDING_SAMPLES = 30 * SAMPLE_RATE     # queued beyond the playout buffer before we stop reading
MAX_PENDING_OPS = 10_000
MIC_QUEUE_FRAMES = 50                      # 1 s of mic audio; the oldest frame is dropped
CONTROL_QUEUE = 1024
FAREWELL_TIMEOUT = 0.1                     # teardown waits at most this long for our last events
NORMAL_CLOSE_CODES = (1000, 1001, 1005)
PROTOCOL_CLOSE_CODES = (1002, 1007, 1009)   # facecast refused the engine's data

_Op = tuple[Literal["open", "close", "audio"], Any]


class _SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Every record carries the session id (as `session_id` and in the text)."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs.setdefault("extra", {}).update(self.extra or {})
        return f"[{(self.extra or {}).get('session_id')}] {msg}", kwargs


class _WireLog(_SessionLog):
    """The logger handed to websockets. Its DEBUG output dumps handshake headers (our secrets),
    so anything below INFO is dropped here whatever the logging configuration says."""

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 (logging API)
        return level >= logging.INFO and self.logger.isEnabledFor(level)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        return None


class ExternalEngine:
    speech_mode = "explicit"
    ping_interval: float = 75.0
    ping_timeout: float = 30.0
    close_timeout: float = 5.0      # a dead peer is declared gone this long after our close frame

    def __init__(self, config: ExternalEngineConfig, host: EngineHost, settings: Settings) -> None:
        self.config = config
        self.host = host
        self.settings = settings
        self.session_id = host.session_id
        self.log = _SessionLog(log, {"session_id": self.session_id})
        self._url = str(config.url)
        self._user_rate = config.audio.user.sample_rate
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        # engine → facecast
        self._accepting = False            # the engine has a segment open (its view)
        self._outside_error_sent = False   # one error per stretch of audio outside a segment
        self._carry = b""                  # odd trailing byte of the previous binary frame
        self._ops: deque[_Op] = deque()
        self._pending_samples = 0
        self._ops_wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._current: Segment | None = None   # the segment facecast last opened for the engine
        self._live: dict[str, Segment] = {}    # opened for the engine and not ended, in order
        self._current_closed_sent = True
        self._dropped_error_sent = False
        # facecast → engine
        self._control: deque[str] = deque(maxlen=CONTROL_QUEUE)
        self._mic: deque[bytes] = deque(maxlen=MIC_QUEUE_FRAMES)
        self._out_wake = asyncio.Event()
        self._mic_rate: int | None = None
        self._resampler: Resampler | None = None
        self._chunker = Chunker(self._user_rate * MIC_FRAME_MS // 1000)
        self.mic_frames_dropped = 0

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        headers = {name: value.get_secret_value() for name, value in self.config.headers.items()}
        where = redact_url(self._url)
        failure: str | None = None
        try:
            # never follows a 3xx: our headers (secrets) must not reach another origin
            self._ws = await connect_no_redirects(
                self._url,
                additional_headers=headers,
                open_timeout=self.settings.engine_connect_timeout,
                ping_interval=self.ping_interval,
                ping_timeout=self.ping_timeout,
                close_timeout=self.close_timeout,
                max_size=MAX_FRAME_BYTES,
                compression=None,
                logger=_WireLog(logging.getLogger(__name__ + ".wire"),
                                {"session_id": self.session_id}),
            )
        except InvalidStatus as exc:
            failure = (f"external engine at {where} refused the connection: "
                       f"HTTP {exc.response.status_code}")
        except InvalidHeader as exc:   # its text may quote a header value: one of our secrets
            failure = f"could not connect to the external engine at {where}: invalid {exc.name} header"
        except TimeoutError:
            failure = (f"external engine at {where} did not answer within "
                       f"{self.settings.engine_connect_timeout:g} s")
        except (OSError, WebSocketException) as exc:
            failure = (f"could not connect to the external engine at {where}: "
                       f"{type(exc).__name__}: {exc}")
        if failure is not None:
            # raised outside the handler: no chained exception can carry a header value
            self.log.warning("%s", failure)
            raise EngineConnectionError(failure)
        self.log.info("connected to external engine at %s (mic %d Hz)", where, self._user_rate)
        for name, coro in (("writer", self._writer()), ("feeder", self._feeder()),
                           ("reader", self._reader())):
            self._tasks.append(asyncio.create_task(
                coro, name=f"external-engine-{name}-{self.session_id}"))

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        await cancel_and_wait(self._tasks, self.log, "external engine task")
        self._tasks.clear()
        if self._ws is not None:
            await self._farewell(self._ws)
            await close_bounded(self._ws, 1000, "session ended", self.close_timeout, self.log)
        self.log.info("disconnected from external engine")

    async def _farewell(self, ws: ClientConnection) -> None:
        """Session teardown, best effort within `FAREWELL_TIMEOUT`: the events still queued,
        then, for every segment that has not ended, `closed` (if still open) and
        `playback.interrupted` with what the media clock had read of it. Mic audio is not sent."""
        now = time.time()
        frames = list(self._control)
        self._control.clear()
        for seg in self._live.values():
            ids = {"segment_id": seg.id, "segment_uid": seg.uid}
            if seg is self._current and not self._current_closed_sent:
                frames.append(json.dumps({"type": "avatar.speech.segment.closed", **ids}))
            frames.append(json.dumps({"type": "avatar.speech.segment.playback.interrupted", **ids,
                                      "played_duration": round(seg.played_duration, 4),
                                      "timestamp": now}))
        self._live.clear()
        try:
            async with asyncio.timeout(FAREWELL_TIMEOUT):
                for frame in frames:
                    await ws.send(frame)
        except (TimeoutError, ConnectionClosed) as exc:
            self.log.info("teardown events not all sent to the engine: %r", exc)

    # -- facecast → engine -------------------------------------------------------------------
    def push_mic(self, pcm: np.ndarray, sample_rate: int) -> None:
        if self._ws is None or self._closing:
            return
        if sample_rate != self._mic_rate:
            self._mic_rate = sample_rate
            self._resampler = Resampler(sample_rate, self._user_rate, quality=MIC_RESAMPLE_QUALITY)
            self._chunker.reset()
        assert self._resampler is not None
        for frame in self._chunker.push(self._resampler.process(pcm)):
            if len(self._mic) == self._mic.maxlen:
                self.mic_frames_dropped += 1
                if self.mic_frames_dropped % 50 == 1:
                    self.log.warning("engine is not reading the mic: %d frames dropped",
                                     self.mic_frames_dropped)
            self._mic.append(frame.astype("<i2", copy=False).tobytes())
        self._out_wake.set()

    def _send_json(self, event: dict[str, Any]) -> None:
        if self._closing:
            return
        if len(self._control) == self._control.maxlen:
            self.log.warning("engine is not reading: dropped event %s", self._control[0][:80])
        self._control.append(json.dumps(event))
        self._out_wake.set()

    def _error(self, subtype: str, reason: str) -> None:
        self.log.info("advisory error to engine (%s): %s", subtype, reason)
        self._send_json({"type": "error", "subtype": subtype, "reason": reason})

    async def _writer(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            while True:
                await self._out_wake.wait()
                self._out_wake.clear()
                while self._control or self._mic:
                    # our events never queue behind mic audio
                    await ws.send(self._control.popleft() if self._control else self._mic.popleft())
        except ConnectionClosed:
            return  # the reader reports how the connection ended

    async def submit_task(self, task_id: str, text: str) -> None:
        self.host.set_task_state(task_id, TaskState.RECORDED)

    def on_sdk_message(self, data: Any) -> None:
        self._send_json({"type": "sdk.message.receive", "data": data})

    def on_playback(self, event: PlaybackEvent) -> None:
        seg = event.segment
        if event.kind == "ended":
            self._live.pop(seg.id, None)
        ids = {"segment_id": seg.id, "segment_uid": seg.uid}
        if event.kind == "started":
            self._send_json({"type": "avatar.speech.segment.playback.started", **ids,
                             "timestamp": time.time()})
            return
        if event.interrupted:
            if seg is self._current and not self._current_closed_sent:
                self._send_closed(seg)   # cleared while open: it takes no more audio
            self._send_json({"type": "avatar.speech.segment.playback.interrupted", **ids,
                             "played_duration": round(event.played_duration, 4),
                             "timestamp": time.time()})
        else:
            self._send_json({"type": "avatar.speech.segment.playback.ended", **ids,
                             "timestamp": time.time()})

    def _send_closed(self, seg: Segment) -> None:
        self._current_closed_sent = True
        self._send_json({"type": "avatar.speech.segment.closed",
                         "segment_id": seg.id, "segment_uid": seg.uid})

    # -- engine → facecast: parsing ----------------------------------------------------------
    async def _reader(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self._on_audio(message)
                    while (self._pending_samples > MAX_PENDING_SAMPLES
                           or len(self._ops) > MAX_PENDING_OPS):
                        self._room.clear()
                        await self._room.wait()   # backpressure: stop reading the socket
                else:
                    self._on_text(message)
        except ConnectionClosed:
            pass
        except Exception as exc:  # a bug here must end the session, not leave it mute
            self.log.exception("external engine reader failed")
            self.host.end_session(EndReason.ENGINE_ERROR, error_code="engine_error",
                                  message=f"internal error reading the external engine: {exc!r}")
            return
        if not self._closing:
            await self._engine_gone(ws)

    def _on_text(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError as exc:
            self._error(JSON_ERROR, f"invalid JSON: {exc}")
            return
        kind = msg.get("type") if isinstance(msg, dict) else None
        if kind == "avatar.speech.segment.create":
            self._on_create(msg.get("segment_uid"))
        elif kind == "avatar.speech.segment.close":
            self._on_close(msg.get("segment_uid"))
        elif kind == "avatar.speech.interrupt":
            self._interrupt()
        elif kind == "sdk.message.send":
            if "data" not in msg:
                self._error(TYPE_ERROR, "sdk.message.send needs a 'data' field")
            else:
                self.host.send_to_sdk({"type": "sdk.message", "data": msg["data"]})
        elif isinstance(kind, str):
            self._error(TYPE_ERROR, f"unknown message type {kind[:100]!r}")
        else:
            self._error(TYPE_ERROR, "a JSON message must be an object with a string 'type'")

    def _on_create(self, uid: Any) -> None:
        if uid is not None and (not isinstance(uid, str | int) or isinstance(uid, bool)):
            self._error(SEGMENT_ERROR, "segment_uid must be a string: segment.create ignored")
            return
        uid = None if uid is None else str(uid)
        if self._accepting:
            self._error(SEGMENT_ERROR, "segment.create while a segment is open: "
                        "the open segment was closed first")
            self._close_segment()
        self._accepting = True
        self._outside_error_sent = False
        self._carry = b""
        self._submit(("open", uid))

    def _on_close(self, uid: Any) -> None:
        if not self._accepting:
            self._error(SEGMENT_ERROR, "segment.close with no open segment")
            return
        self._close_segment()

    def _close_segment(self) -> None:
        if self._carry:
            self._error(SEGMENT_ERROR, "segment closed after an odd number of audio bytes: "
                        "the last byte was dropped")
            self._carry = b""
        self._accepting = False
        self._submit(("close", None))

    def _on_audio(self, data: bytes) -> None:
        if not self._accepting:
            if not self._outside_error_sent:
                self._outside_error_sent = True
                self._error(SEGMENT_ERROR, "audio received outside a segment was dropped "
                            "(send avatar.speech.segment.create first)")
            return
        if self._carry:
            data = self._carry + data
            self._carry = b""
        if len(data) % 2:
            self._carry = data[-1:]
            data = data[:-1]
        pcm = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
        for i in range(0, pcm.size, WRITE_CHUNK):
            self._submit(("audio", pcm[i:i + WRITE_CHUNK]))

    def _interrupt(self) -> None:
        """Barge-in: every segment not fully played ends interrupted, in playback order:
        `clear()` ends the playing one, those buffered behind it and the open one; segments whose
        `create` still waits in our queue are then created and ended the same way (0 s played)."""
        backlog = [op[1] for op in self._ops if op[0] == "open"]
        self._ops.clear()
        self._pending_samples = 0
        self._room.set()
        self._accepting = False
        self._carry = b""
        self.log.info("engine interrupt (%d queued segment(s) dropped)", len(backlog))
        speech = self.host.speech
        speech.clear()   # ends the playing segment first: playback.interrupted goes out
        for uid in backlog:
            self._apply_nowait(("open", uid))   # `created`, as for any create we accepted
            speech.clear()                      # `closed`, `playback.interrupted` (0 s)
        seg = self._current
        if seg is not None and not self._current_closed_sent:
            self._send_closed(seg)

    # -- engine → facecast: applying ops in order --------------------------------------------
    def _submit(self, op: _Op) -> None:
        if not self._ops and self._can_apply_now(op):
            self._apply_nowait(op)
            return
        self._ops.append(op)
        if op[0] == "audio":
            self._pending_samples += op[1].size
        self._ops_wake.set()

    def _can_apply_now(self, op: _Op) -> bool:
        return op[0] != "audio" or self.host.speech.has_space(op[1].size)

    def _apply_nowait(self, op: _Op) -> None:
        kind, arg = op
        speech = self.host.speech
        if kind == "open":
            self._current = speech.open(arg)
            self._live[self._current.id] = self._current
            self._current_closed_sent = False
            self._dropped_error_sent = False
            self._send_json({"type": "avatar.speech.segment.created",
                             "segment_id": self._current.id, "segment_uid": arg})
        elif kind == "close":
            seg = self._current
            if seg is not None and not self._current_closed_sent:
                self._send_closed(seg)      # before close(): an empty segment ends right away
                if speech.open_segment is seg:
                    speech.close()
        else:
            try:
                if speech.open_segment is not self._current:
                    raise NoOpenSegment
                speech.write_nowait(arg)
            except NoOpenSegment:
                self._audio_dropped()

    def _audio_dropped(self) -> None:
        if not self._dropped_error_sent:
            self._dropped_error_sent = True
            self._error(SEGMENT_ERROR, "the segment was interrupted: its remaining audio was "
                        "dropped (open a new segment)")

    async def _feeder(self) -> None:
        speech = self.host.speech
        while True:
            if not self._ops:
                self._ops_wake.clear()
                await self._ops_wake.wait()
                continue
            op = self._ops[0]
            if op[0] == "audio" and not speech.has_space(op[1].size):
                if speech.open_segment is not self._current or self._current is None:
                    self._ops.popleft()
                    self._pending_samples -= op[1].size
                    self._audio_dropped()
                    continue
                written = await speech.write(op[1])   # waits for the clock to make room
                if self._ops and self._ops[0] is op:
                    self._ops.popleft()
                    self._pending_samples -= op[1].size
                    if written is None:
                        self._audio_dropped()
            else:
                self._ops.popleft()
                if op[0] == "audio":
                    self._pending_samples -= op[1].size
                self._apply_nowait(op)
            if self._pending_samples <= MAX_PENDING_SAMPLES and len(self._ops) <= MAX_PENDING_OPS:
                self._room.set()

    # -- the end -----------------------------------------------------------------------------
    async def _engine_gone(self, ws: ClientConnection) -> None:
        """The engine socket closed after a successful connect: the agent has left, whatever the
        cause (any close code, dropped, ping timeout), which the end message names. After a polite
        close (1000, 1001, no code) its queued speech plays out first. Only facecast closing the
        socket on a protocol violation (frame too large, invalid data) is an `engine_error`."""
        closed = ws.close_exc
        rcvd, sent = closed.rcvd, closed.sent
        ours_first = sent is not None and closed.rcvd_then_sent is not True   # we closed it
        if ours_first and sent is not None and sent.code in PROTOCOL_CLOSE_CODES:
            # facecast refused what the engine sent: the engine broke, it did not leave
            if sent.code == 1009:
                message = f"external engine sent a frame larger than {MAX_FRAME_BYTES} bytes"
            else:
                why = f": {sent.reason[:120]}" if sent.reason else ""
                message = f"external engine broke the WebSocket protocol (code {sent.code}{why})"
            self.log.warning("%s: session ends", message)
            self.host.end_session(EndReason.ENGINE_ERROR, error_code="engine_error",
                                  message=message)
            return
        polite = False
        if ours_first and sent is not None and sent.code == 1011 and "ping" in sent.reason:
            message = (f"external engine stopped answering pings "
                       f"(ping timeout: no pong within {self.ping_timeout:g} s)")
        elif rcvd is not None:
            polite = rcvd.code in NORMAL_CLOSE_CODES
            if rcvd.code == 1005:
                message = "external engine closed the connection (no close code)"
            else:
                reason = f": {rcvd.reason[:120]}" if rcvd.reason else ""
                message = f"external engine closed the connection with code {rcvd.code}{reason}"
        else:
            message = "connection to the external engine was lost (no close frame)"
        if not polite:
            self.log.warning("%s: session ends (agent left), queued speech dropped", message)
            self.host.end_session(EndReason.AGENT_LEFT, message=message)
            return
        self.log.info("%s: session ends (agent left) after its queued speech", message)
        if self._accepting:
            self._close_segment()       # what it sent so far still plays
        while self._ops:                # let queued speech reach the playout buffer
            self._room.clear()
            await self._room.wait()
        self.host.end_session(EndReason.AGENT_LEFT, message=message, after_speech=True)
