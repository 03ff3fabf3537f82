"""The Cartesia engine: a Cartesia voice agent (Line or Managed Agents) over its WebSocket.

Three tasks per session, owned by `CartesiaEngine` and cancelled in reverse start order by
`close()`:

- `reader`: reads every server frame and acts on it at once. Agent audio goes straight into the
  `SpeechBuffer` (`write_nowait`) while it has room; `clear` drops all agent audio everywhere.
  The reader never waits on the playout, so a `clear` is never stuck behind queued audio.
- `writer`: only used when the playout buffer is full: it feeds the overflow backlog with
  `await speech.write()` (backpressure). A `clear` empties the backlog, and the chunk the writer
  holds is dropped by the buffer itself (`write` returns None after a `clear`).
- `sender`: the user's mic, resampled to 24 kHz s16le mono and sent as base64 in 20 ms chunks
  the moment it is pushed. The stream stays continuous, as both protocols expect: when no user
  audio has been pushed for `MIC_SILENCE_GRACE` (no page, a stalled or muted track), the sender
  pads with 20 ms chunks of silence paced at real time on the engine's clock, and stops at once
  when user audio is pushed again. The queueing, resampling, chunking and padding are
  `MicStream`'s (`engines/mic.py`); the sender only frames each chunk for the wire.

Segments and the SDK's speaking events come from the `SpeechBuffer`'s playback events, not from
here: Cartesia has no turn markers.

Credentials (see `cartesia_wire.build_target`): Line gets `Authorization: Bearer <token>` (an
`/access-token` token or an API key); Managed Agents gets an API key (`sk_car_...`) as
`X-API-Key` and any other value (the session token from
`POST /v1/agents/websocket/{agent_id}/sessions`) as the `access_token` query parameter, the only
place it accepts one, masked in every log.
HTTP redirects are never followed (they would carry the credential header to another host): a
3xx is a refused upgrade, like a 401.
Managed audio is asked for at `speaking_pace`, like Line, so a `clear` never trails seconds of
already-sent audio and the agent's idea of what was heard stays right.

The agent closing the socket with code 1000 (`end_call`, idle timeout) ends the session as
`agent_left` after queued speech; any other close, a lost connection or a fatal Managed `error`
ends it as `engine_error`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from collections import deque
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from facecast.aio import cancel_and_wait
from facecast.clock import Clock, SystemClock
from facecast.engines.cartesia_wire import (
    CLIENT_CLOSE_REASON,
    Inbound,
    Kind,
    MalformedFrame,
    SessionLog,
    Target,
    audio_frame,
    build_target,
    classify_close,
    hello_frame,
    parse_frame,
    tool_refusal_frame,
)
from facecast.engines.mic import MicStream
from facecast.engines.wsconnect import close_bounded, connect_no_redirects
from facecast.errors import EngineConnectionError
from facecast.media.audio import SAMPLE_RATE
from facecast.sessions.state import EndReason, TaskState

if TYPE_CHECKING:
    from facecast.config import Settings
    from facecast.engines.base import EngineHost
    from facecast.engines.config import CartesiaEngineConfig
    from facecast.media.playout import PlaybackEvent

logger = logging.getLogger(__name__)
_ws_logger = logging.getLogger("facecast.engines.cartesia.ws")

MIC_CHUNK_SAMPLES = SAMPLE_RATE // 50          # 20 ms at 24 kHz
MIC_CHUNK_SECONDS = MIC_CHUNK_SAMPLES / SAMPLE_RATE
MIC_QUEUE_SECONDS = 1.0                        # user audio waiting to be sent; oldest dropped
MIC_SILENCE_GRACE = 0.2                        # no user audio pushed this long → send silence
MIC_SILENCE_CATCHUP = 5                        # late silence chunks sent at once, at most
BACKLOG_MAX_SAMPLES = 30 * SAMPLE_RATE         # agent audio beyond a full playout buffer
PING_INTERVAL = 30.0
PING_TIMEOUT = 20.0
CLOSE_TIMEOUT = 2.0
MAX_FRAME_BYTES = 16 * 2**20


class CartesiaEngine:
    def __init__(self, config: CartesiaEngineConfig, host: EngineHost, settings: Settings, *,
                 clock: Clock | None = None) -> None:
        self._config = config
        self._clock: Clock = clock or SystemClock()
        self._host = host
        self._settings = settings
        self._api = config.api
        token = config.access_token.get_secret_value()
        self._log = SessionLog(logger, host.session_id, [token])
        self._ws_log = SessionLog(_ws_logger, host.session_id, [token])
        self._stream_id = host.session_id
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self._closed = False
        self._ended = False
        self._mic = MicStream(
            rate=SAMPLE_RATE, chunk_seconds=MIC_CHUNK_SECONDS, queue_seconds=MIC_QUEUE_SECONDS,
            pad_silence=True, grace=MIC_SILENCE_GRACE, catchup=MIC_SILENCE_CATCHUP,
            clock=self._clock, log=self._log)
        # agent audio path
        self._backlog: deque[np.ndarray] = deque()
        self._backlog_samples = 0
        self._backlog_ready = asyncio.Event()
        self._backlog_space = asyncio.Event()
        self._backlog_space.set()
        self._writer_holding = False
        self._odd_byte = b""
        # counters (for logs and benchmarks)
        self.frames_received = 0
        self.clears = 0                         # mic counters: the properties below

    def __repr__(self) -> str:
        return (f"CartesiaEngine(session_id={self._host.session_id!r}, api={self._api!r}, "
                f"agent_id={self._config.agent_id!r})")

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        if self._ws is not None or self._closed:
            raise RuntimeError("CartesiaEngine.start() called twice")
        target = build_target(
            self._api, self._settings.cartesia_url, self._config.agent_id,
            self._config.access_token.get_secret_value(),
            line_version=self._settings.cartesia_version,
            agents_version=self._settings.cartesia_agents_version)
        timeout = self._settings.engine_connect_timeout
        self._log.info("connecting to Cartesia agent %s (%s)", self._config.agent_id, target.safe_url)
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                self._ws = await self._connect(target)
                await self._ws.send(hello_frame(self._api, self._stream_id))
                await self._handshake()
        except TimeoutError:
            await self._abort()
            stage = "the WebSocket upgrade" if self._ws is None else "the agent's ready message"
            raise EngineConnectionError(
                f"Cartesia agent did not answer within {timeout:g}s (waiting for {stage})") from None
        except BaseException:
            await self._abort()
            raise
        self._log.info("Cartesia agent ready in %.0f ms (api=%s, stream_id=%s)",
                       (time.monotonic() - t0) * 1000, self._api, self._stream_id)
        self._spawn(self._read_loop(), "reader")
        self._spawn(self._write_loop(), "writer")
        self._spawn(self._send_loop(), "sender")

    async def _connect(self, target: Target) -> ClientConnection:
        try:
            return await connect_no_redirects(
                target.url, additional_headers=target.headers, compression=None,
                open_timeout=None, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT, max_size=MAX_FRAME_BYTES, logger=self._ws_log)
        except InvalidStatus as exc:
            status = exc.response.status_code
            body = self._ws_log.redact(bytes(exc.response.body or b"")[:200].decode("utf-8", "replace"))
            detail = f": {body.strip()}" if body.strip() else ""
            if status in (401, 403):
                msg = f"the agent refused the credential (HTTP {status}){detail}"
            elif status == 404:
                msg = f"Cartesia agent not found (HTTP 404, check agent_id){detail}"
            elif 300 <= status < 400:
                # never followed: the credential rides in a header a redirect would carry along
                location = exc.response.headers.get("Location", "")
                where = self._ws_log.redact(location.partition("?")[0])[:200] or "nowhere"
                msg = (f"Cartesia refused the agent WebSocket upgrade (HTTP {status}): a redirect "
                       f"to {where}, not followed; check FACECAST_CARTESIA_URL")
            else:
                msg = f"Cartesia refused the agent WebSocket upgrade (HTTP {status}){detail}"
            self._log.warning("%s", msg)
            raise EngineConnectionError(msg) from None
        except InvalidURI:
            raise EngineConnectionError(
                f"invalid Cartesia agent URL {target.safe_url!r}") from None
        except (InvalidHandshake, OSError) as exc:
            msg = (f"cannot connect to the Cartesia agent at {target.safe_url}: "
                   f"{type(exc).__name__}: {self._ws_log.redact(str(exc))}")
            self._log.warning("%s", msg)
            raise EngineConnectionError(msg) from None

    async def _handshake(self) -> None:
        """Wait for `ack` / `session_ready`; anything else that arrives first is handled."""
        assert self._ws is not None
        while True:
            try:
                text = await self._ws.recv()
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else 1006
                reason = exc.rcvd.reason if exc.rcvd else "no close frame"
                raise EngineConnectionError(
                    f"the agent closed the connection during the handshake ({code}"
                    f"{', ' + reason if reason else ''})") from None
            event = self._parse(text)
            if event is None:
                continue
            if event.kind is Kind.READY:
                sid = event.data.get("stream_id")
                if isinstance(sid, str) and sid:
                    self._stream_id = sid
                if self._api == "agents":
                    self._log.info("Managed Agents call %s", event.data.get("call_id"))
                return
            if event.kind is Kind.ERROR:
                if event.data.get("fatal") is True:
                    raise EngineConnectionError(
                        f"the agent rejected the session: {_error_text(event.data)}")
                # only fatal errors end a call; keep waiting (the connect timeout still runs)
                self._log.warning("agent error before session_ready (not fatal): %s",
                                  _error_text(event.data))
                continue
            await self._dispatch(event)

    async def close(self) -> None:
        """Disconnect (idempotent). Never calls `end_session`."""
        if self._closed:
            return
        self._closed = True
        self._closing = True
        for task in reversed(self._tasks):
            if task.get_name().endswith(":sender"):
                task.cancel()
        ws = self._ws
        if ws is not None:
            await close_bounded(ws, 1000, CLIENT_CLOSE_REASON, CLOSE_TIMEOUT, self._log)
        await cancel_and_wait(self._tasks, self._log)
        self._tasks.clear()
        self._mic.clear()
        self._backlog.clear()
        self._log.info("Cartesia engine closed (%d frames in, %d mic chunks out, %d clears)",
                       self.frames_received, self.mic_chunks_sent, self.clears)

    async def _abort(self) -> None:
        self._closing = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await close_bounded(ws, 1000, CLIENT_CLOSE_REASON, CLOSE_TIMEOUT, self._log)
        self._closed = True

    def _spawn(self, coro: Coroutine[Any, Any, None], role: str) -> None:
        task = asyncio.get_running_loop().create_task(
            coro, name=f"cartesia:{self._host.session_id}:{role}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._closing:
            return
        exc = task.exception()
        if exc is not None:
            self._log.error("%s crashed: %r", task.get_name(), exc, exc_info=exc)
            self._end(EndReason.ENGINE_ERROR, error_code="engine_error",
                      message="internal error in the Cartesia engine")

    def _end(self, reason: EndReason, *, error_code: str | None = None, message: str | None = None,
             after_speech: bool = False) -> None:
        if self._ended or self._closing:
            return
        self._ended = True
        self._log.info("ending session: %s (%s)", reason.value, message)
        self._host.end_session(reason, error_code=error_code, message=message,
                               after_speech=after_speech)

    # -- server → us -------------------------------------------------------------------------
    def _parse(self, text: str | bytes) -> Inbound | None:
        """A frame from the agent, or None (logged) for binary or malformed frames: the call goes on."""
        if not isinstance(text, str):
            self._log.warning("ignoring a binary frame (%d bytes) from the agent", len(text))
            return None
        try:
            return parse_frame(self._api, text)
        except MalformedFrame as exc:
            self._log.warning("malformed frame from the agent: %s", exc)
            return None

    async def _read_loop(self) -> None:
        ws = self._ws
        assert ws is not None
        try:
            while True:
                event = self._parse(await ws.recv())
                if event is not None:
                    await self._dispatch(event)
        except ConnectionClosed as exc:
            if self._closing:
                return
            if exc.rcvd is not None:
                outcome = classify_close(exc.rcvd.code, exc.rcvd.reason)
            else:
                lost = exc.sent.reason if exc.sent is not None and exc.sent.reason else None
                outcome = classify_close(None, "", lost=lost)
            if outcome.reason is EndReason.AGENT_LEFT:
                self._log.info("%s", outcome.message)
            else:
                self._log.warning("%s", outcome.message)
            self._end(outcome.reason, error_code=outcome.error_code,
                      message=None if outcome.reason is EndReason.AGENT_LEFT else outcome.message,
                      after_speech=outcome.after_speech)

    async def _dispatch(self, event: Inbound) -> None:
        self.frames_received += 1
        kind = event.kind
        if kind is Kind.AUDIO:
            assert event.payload is not None
            await self._on_audio(event.payload)
        elif kind is Kind.CLEAR:
            self._on_clear()
        elif kind is Kind.READY:
            self._log.debug("ignoring a repeated %s", event.name)
        elif kind is Kind.TRANSFER:
            self._log.warning("agent asked to transfer the call; not supported by a web avatar, "
                              "ignored (the session goes on)")
        elif kind is Kind.ERROR:
            self._on_error(event.data)
        elif kind is Kind.TOOL_CALL:
            await self._on_tool_call(event.data)
        elif kind is Kind.INFO:
            self._log.debug("agent event %s (not acted on)", event.name)
        else:
            self._log.debug("ignoring unknown agent event %r", event.name)

    async def _on_audio(self, payload: str) -> None:
        try:
            raw = base64.b64decode(payload)
        except (binascii.Error, ValueError):
            self._log.warning("agent audio with an invalid base64 payload dropped")
            return
        if self._odd_byte:
            raw = self._odd_byte + raw
        if len(raw) % 2:
            raw, self._odd_byte = raw[:-1], raw[-1:]
        else:
            self._odd_byte = b""
        if not raw:
            return
        pcm = np.frombuffer(raw, dtype="<i2").astype(np.int16, copy=False)
        speech = self._host.speech
        if not self._backlog and not self._writer_holding and speech.has_space(pcm.size):
            speech.write_nowait(pcm)
            return
        # the playout buffer is full: queue in order behind it (the writer drains this)
        self._backlog.append(pcm)
        self._backlog_samples += pcm.size
        self._backlog_ready.set()
        if self._backlog_samples > BACKLOG_MAX_SAMPLES:
            self._log.debug("agent audio backlog full: pausing the socket")
            self._backlog_space.clear()
            await self._backlog_space.wait()

    def _on_clear(self) -> None:
        """Barge-in: nothing of the current reply may be played from now on."""
        self.clears += 1
        self._backlog.clear()
        self._backlog_samples = 0
        self._backlog_space.set()
        self._odd_byte = b""
        seg = self._host.speech.clear()   # a writer blocked in `write` drops its chunk
        self._log.debug("clear: agent audio dropped (segment %s)", seg.id if seg else None)

    def _on_error(self, data: Any) -> None:
        text = _error_text(data)
        if data.get("fatal") is True:
            self._log.error("fatal agent error: %s", text)
            self._end(EndReason.ENGINE_ERROR, error_code="engine_error",
                      message=f"agent error: {text}")
        else:
            self._log.warning("agent error (not fatal): %s", text)

    async def _on_tool_call(self, data: Any) -> None:
        name = str(data.get("tool_name", "?"))
        call_id = data.get("tool_call_id")
        self._log.warning("agent called client tool %r; none are available here", name)
        if data.get("expects_response") and isinstance(call_id, str) and self._ws is not None:
            try:
                await self._ws.send(tool_refusal_frame(call_id, name))
            except ConnectionClosed:
                pass

    async def _write_loop(self) -> None:
        speech = self._host.speech
        while True:
            await self._backlog_ready.wait()
            self._backlog_ready.clear()
            while self._backlog:
                pcm = self._backlog.popleft()
                self._backlog_samples -= pcm.size
                if self._backlog_samples <= BACKLOG_MAX_SAMPLES:
                    self._backlog_space.set()
                self._writer_holding = True
                try:
                    await speech.write(pcm)   # None: cleared while waiting, chunk dropped
                finally:
                    self._writer_holding = False

    # -- us → server -------------------------------------------------------------------------
    def push_mic(self, pcm: np.ndarray, sample_rate: int) -> None:
        """Queue user audio (int16 mono). Never blocks; drops the oldest audio when full."""
        if self._closed:
            return
        self._mic.push(pcm, sample_rate)

    async def _send_loop(self) -> None:
        ws = self._ws
        assert ws is not None

        async def send(chunk: np.ndarray) -> None:
            b64 = base64.b64encode(chunk.astype("<i2", copy=False).tobytes())
            await ws.send(audio_frame(self._api, self._stream_id, b64.decode("ascii")))

        try:
            await self._mic.run(send)
        except ConnectionClosed:
            return   # the reader reports why

    @property
    def mic_chunks_sent(self) -> int:
        """Every audio frame sent, silence included."""
        return self._mic.chunks_sent

    @property
    def silence_chunks_sent(self) -> int:
        """Of `mic_chunks_sent`, the silence padding."""
        return self._mic.silence_chunks_sent

    # -- the rest of the Engine protocol -----------------------------------------------------
    async def submit_task(self, task_id: str, text: str) -> None:
        """Cartesia agents take no text input: the task is recorded, nothing is spoken."""
        self._log.info("task %s recorded (Cartesia agents do not speak text tasks)", task_id)
        self._host.set_task_state(task_id, TaskState.RECORDED)

    def on_playback(self, event: PlaybackEvent) -> None:
        self._log.debug("playback %s %s (%.2fs played%s)", event.kind, event.segment.id,
                        event.played_duration, ", interrupted" if event.interrupted else "")

    def on_sdk_message(self, data: Any) -> None:
        self._log.debug("SDK message ignored (the Cartesia engine has no custom-message path)")


def _error_text(data: Any) -> str:
    code = data.get("code", "unknown") if isinstance(data, dict) else "unknown"
    message = data.get("message", "") if isinstance(data, dict) else ""
    return f"{code}: {message}" if message else str(code)
