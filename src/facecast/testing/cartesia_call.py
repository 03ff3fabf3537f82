"""One call on the Cartesia stand-in: handshake, user-turn detection, paced agent speech.

`AgentConnection` is both the server-side state machine of a call and the handle a test drives:
`say()`, `end_call()`, `transfer_call()`, `send_raw()`, `drop()`, `close()`, and what it saw:
`events`, `received_pcm()`, `sent_samples`, `wait_for()`.

Agent speech goes out in `chunk_ms` chunks on a timeline: chunk k of a run is due at
`t0 + (samples_before_k - burst) / rate`, so pacing never drifts however long the call lasts.
A user turn starting over interruptible speech cuts it (nothing more of it is sent), drops the
queued interruptible speech, cancels the running persona reply and sends `clear`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from websockets.exceptions import ConnectionClosed

from facecast.clock import Clock
from facecast.media.audio import as_int16
from facecast.media.tts import synthesize_async
from facecast.testing.call_media import Action, Recording, Speech, SpeechPlayer, sleep_until
from facecast.testing.cartesia_turns import Turns
from facecast.testing.cartesia_wire import (
    AgentsDialect,
    CallSetup,
    LineDialect,
    Protocol,
    WireError,
    classify,
    loads_frame,
    parse_line_start,
    parse_session_create,
)
from facecast.testing.vad import EnergyVAD, VadEvent

if TYPE_CHECKING:
    from websockets.asyncio.server import ServerConnection

    from facecast.testing.cartesia_agent import StandInOptions
    from facecast.testing.persona import Persona

logger = logging.getLogger(__name__)

CALL_ENDED = "call ended by agent"
IDLE_CLOSE = "connection idle timeout"


class ConnEvent(NamedTuple):
    time: float       # clock.monotonic()
    direction: str    # "in" (client frame), "out" (agent frame), "agent" (internal)
    event: str        # frame event/type name, or e.g. user_turn_started, speech_interrupted


class AgentConnection:
    """A call on the stand-in, seen from the agent's side (see module docstring)."""

    def __init__(self, ws: ServerConnection, protocol: Protocol, agent_id: str,
                 query: dict[str, str], cartesia_version: str | None, auth: str,
                 options: StandInOptions, persona: Persona | None, clock: Clock,
                 conn_id: str) -> None:
        self.ws = ws
        self.id = conn_id
        self.protocol: Protocol = protocol
        self.agent_id = agent_id
        self.headers = ws.request.headers if ws.request is not None else None
        self.query = query
        self.cartesia_version = cartesia_version
        self.auth = auth          # how the client authenticated: bearer, x-api-key, access_token
        self.options = options
        self.clock = clock
        self._persona = persona
        self.start_frame: dict[str, Any] | None = None
        self.setup: CallSetup | None = None
        self.stream_id: str | None = None
        self.call_id: str | None = None
        self.events: list[ConnEvent] = []
        self.frames_in: list[dict[str, Any]] = []     # non-audio client frames
        self.frames_out: list[dict[str, Any]] = []    # non-audio agent frames
        self.user_turns = 0
        self.started_at = clock.monotonic()
        self.last_client_frame = self.started_at
        self._dialect: LineDialect | AgentsDialect | None = None
        self._send_lock = asyncio.Lock()
        self._counts: Counter[str] = Counter()
        self._waiters: list[tuple[str, int, asyncio.Future[ConnEvent]]] = []
        self._recording: Recording | None = None
        self._vad: EnergyVAD | None = None
        self._turn_start = 0
        self._ending = False
        self._tasks: list[asyncio.Task[Any]] = []
        self._reply: asyncio.Task[None] | None = None
        self._player: SpeechPlayer | None = None
        self._turns = Turns(self._emit_turn, lambda: self.clock.monotonic() - self.started_at)
        self._closed = asyncio.Event()
        self._started = asyncio.Event()

    # -- what tests read -------------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.setup.audio.sample_rate if self.setup else 0

    @property
    def introduction(self) -> str | None:
        return self.setup.introduction if self.setup else None

    @property
    def sent_samples(self) -> int:
        return self._player.sent_samples if self._player else 0

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code once the connection is closed (1006: dropped)."""
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    @property
    def user_speaking(self) -> bool:
        """The VAD is inside a user turn (a turn start would barge in on interruptible speech)."""
        return self._vad is not None and self._vad.speaking

    def received_pcm(self) -> np.ndarray:
        """All user audio received (bounded by `max_record_s`), int16 at the input rate."""
        if self._recording is None:
            return np.zeros(0, dtype=np.int16)
        return self._recording.all()

    async def wait_for(self, event: str, timeout: float = 5.0, *, count: int = 1) -> ConnEvent:
        """Wait until `event` has been logged `count` times (past events count); returns it."""
        if self._counts[event] >= count:
            return [e for e in self.events if e.event == event][count - 1]
        fut: asyncio.Future[ConnEvent] = asyncio.get_running_loop().create_future()
        self._waiters.append((event, count, fut))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters = [w for w in self._waiters if w[2] is not fut]

    async def wait_started(self, timeout: float = 5.0) -> None:
        """Until the handshake is done (`ack` / `session_ready` sent); raises RuntimeError if
        the call closed before that."""
        if not self._started.is_set():
            waits = [asyncio.ensure_future(self._started.wait()),
                     asyncio.ensure_future(self._closed.wait())]
            try:
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if not self._started.is_set():
                if self.closed:
                    raise RuntimeError(f"{self.id}: the call closed before it started")
                raise TimeoutError(f"{self.id}: no start within {timeout:g} s")

    async def wait_closed(self, timeout: float = 5.0) -> None:
        await asyncio.wait_for(self._closed.wait(), timeout)

    def touch(self) -> None:
        """A client frame (data, ping, pong or close) arrived: the call is not idle."""
        self.last_client_frame = self.clock.monotonic()

    # -- what tests (and personas) do ------------------------------------------------------------
    async def say(self, speech: str | np.ndarray, *, interruptible: bool = True,
                  text: str | None = None) -> Speech:
        """Queue agent speech: text (espeak-ng) or int16 PCM at the call's rate (`text` then
        names it in turn events). Returns once queued; `await (await conn.say(...)).wait()`
        waits until it is sent or cut."""
        await self.wait_started(self.options.start_timeout)
        if isinstance(speech, str):
            text = speech
            pcm = await synthesize_async(speech, voice=self.options.voice,
                                         sample_rate=self.sample_rate)
        else:
            pcm = as_int16(speech).copy()
        item = Speech(pcm=pcm, interruptible=interruptible, text=text)
        assert self._player is not None
        if self.closed:
            item._settle(cancelled=True)
        else:
            self._player.enqueue(item)
        return item

    async def end_call(self, reason: str = "agent_ended") -> None:
        """Close `1000 "call ended by agent"` once all speech queued so far has played.
        Returns at once; `wait_closed()` waits for the close."""
        self._ending = True
        await self._enqueue_action("end_call", reason)

    async def transfer_call(self, target_phone_number: str) -> None:
        """Send `transfer_call` (Line only) after the speech queued so far; returns once sent."""
        if self.protocol != "line":
            raise ValueError("the Managed Agents protocol has no transfer_call event")
        action = await self._enqueue_action("transfer", target_phone_number)
        await action.done

    async def send_dtmf(self, digit: str) -> None:
        assert self._dialect is not None
        await self._send(self._dialect.dtmf(digit))

    async def send_custom(self, metadata: dict[str, Any]) -> None:
        if not isinstance(self._dialect, LineDialect):
            raise ValueError("custom events exist on Line only")
        await self._send(self._dialect.custom(metadata))

    async def send_tool_call(self, tool_name: str, parameters: dict[str, Any], *,
                             expects_response: bool = True) -> str:
        if not isinstance(self._dialect, AgentsDialect):
            raise ValueError("client_tool_call exists on Managed Agents only")
        call_id = f"tc_{uuid.uuid4().hex[:12]}"
        await self._send(self._dialect.tool_call(call_id, tool_name, parameters,
                                                 expects_response))
        return call_id

    async def send_json(self, frame: dict[str, Any]) -> None:
        await self._send(frame)

    async def send_raw(self, data: str | bytes) -> None:
        """Send one frame exactly as given (garbage included)."""
        async with self._send_lock:
            await self.ws.send(data)
        self._log("out", "raw")

    async def drop(self) -> None:
        """Abort the TCP connection: no close frame, like a crashed server."""
        self._log("agent", "dropped")
        self.ws.transport.abort()
        await asyncio.sleep(0)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self._log("agent", "close")
        await self.ws.close(code, reason)

    async def fail(self, message: str = "agent failed") -> None:
        """The agent crashes: Managed sends a fatal `agent_failed` error; both close 1011."""
        self._log("agent", "fail")
        if isinstance(self._dialect, AgentsDialect):
            await self._send(self._dialect.error("agent_failed", message, fatal=True))
        await self.ws.close(1011, message[:120])

    # -- the call ------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            if await self._handshake():
                await self._serve()
        except ConnectionClosed:
            pass
        finally:
            await self._teardown()

    async def _first_frame(self) -> str | bytes | None:
        try:
            return await asyncio.wait_for(self.ws.recv(), self.options.start_timeout)
        except TimeoutError:
            return None

    async def _handshake(self) -> bool:
        raw = await self._first_frame()
        if raw is not None:
            self.last_client_frame = self.clock.monotonic()
        if self.protocol == "agents":
            self._dialect = dialect = AgentsDialect()
            try:
                if raw is None:
                    raise WireError(f"no session_create within {self.options.start_timeout:g} s")
                self.setup = parse_session_create(loads_frame(raw))
            except WireError as exc:
                await self._send(dialect.error(exc.code, exc.message, fatal=True))
                await self.ws.close(1008, exc.message[:120])
                return False
            self.start_frame = self.setup.frame
            if self.options.handshake_error is not None:
                code, message, fatal = self.options.handshake_error
                await self._send(dialect.error(code, message, fatal=fatal))
                if fatal:
                    await self.ws.close(1008, message[:120])
                    return False
            self.call_id = f"call_{uuid.uuid4().hex[:16]}"
            await self._send(dialect.session_ready(self.call_id, self.agent_id,
                                                   self.options.agent_version_id, self.setup))
        else:
            try:
                if raw is None:
                    raise WireError(f"no start within {self.options.start_timeout:g} s")
                self.setup = parse_line_start(loads_frame(raw))
            except WireError as exc:
                await self.ws.close(1008, exc.message[:120])
                return False
            self.start_frame = self.setup.frame
            self.stream_id = self.setup.stream_id or f"stream_{uuid.uuid4().hex[:12]}"
            self._dialect = LineDialect(self.stream_id)
            await self._send(self._dialect.ack(self.setup))
        return True

    async def _serve(self) -> None:
        assert self.setup is not None and self._dialect is not None
        rate = self.setup.audio.sample_rate
        self._vad = EnergyVAD(rate, self.options.vad)
        self._recording = Recording(int(self.options.max_record_s * rate))
        paced = self.setup.output_delivery == "speaking_pace"
        self._player = SpeechPlayer(
            rate=rate, chunk_ms=self.options.chunk_ms, burst_ms=self.options.initial_burst_ms,
            paced=paced, clock=self.clock, send_audio=self._send_audio,
            on_action=self._run_action, on_speech=self._on_speech)
        self._started.set()
        self._spawn(self._player.run(), "player")
        self._spawn(self._idle_watchdog(), "idle")
        if self._persona is not None and self.options.greeting:
            self._reply = self._spawn(self._persona.on_call_started(self), "greeting")
        async for raw in self.ws:
            self.last_client_frame = self.clock.monotonic()
            await self._on_frame(raw)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        self._tasks = [t for t in self._tasks if not t.done()]
        task = asyncio.ensure_future(coro)
        task.set_name(f"standin-{self.id}-{name}")
        task.add_done_callback(self._task_done)
        self._tasks.append(task)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            if not isinstance(exc, ConnectionClosed):
                logger.error("%s: task %s failed", self.id, task.get_name(), exc_info=exc)

    async def _teardown(self) -> None:
        self._log("agent", "closed")
        for task in reversed(self._tasks):
            task.cancel()
        for task in reversed(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._player is not None:
            self._player.abandon()
        self._closed.set()

    async def _idle_watchdog(self) -> None:
        idle = self.options.idle_timeout
        while True:
            due = self.last_client_frame + idle
            if self.clock.monotonic() >= due:
                logger.info("%s: idle for %.1f s, closing", self.id, idle)
                self._log("agent", "idle_timeout")
                await self.ws.close(1000, IDLE_CLOSE)
                return
            await sleep_until(self.clock, due)

    # -- incoming frames -------------------------------------------------------------------------
    async def _on_frame(self, raw: str | bytes) -> None:
        try:
            frame = loads_frame(raw)
            name, payload = classify(self.protocol, frame)
        except WireError as exc:
            self._log("in", "invalid")
            logger.warning("%s: bad client frame: %s", self.id, exc.message)
            if isinstance(self._dialect, AgentsDialect):
                await self._send(self._dialect.error(exc.code, exc.message, fatal=False))
            return
        if name not in ("media_input", "audio_input"):
            self.frames_in.append(frame)
            self._log("in", name)
            return
        assert self.setup is not None
        try:
            pcm = self.setup.audio.decode(payload)
        except WireError as exc:
            self._log("in", "invalid")
            logger.warning("%s: bad audio frame: %s", self.id, exc.message)
            return
        assert self._recording is not None
        self._recording.append(pcm)
        assert self._vad is not None
        for event in self._vad.feed(pcm):
            await self._on_vad(event)

    async def _on_vad(self, event: VadEvent) -> None:
        if event.kind == "start":
            self._turn_start = event.sample
            self._log("agent", "user_turn_started")
            if not self._ending:
                await self._barge_in()
            await self._turns.start_user()
            return
        self.user_turns += 1
        self._log("agent", "user_turn_ended")
        await self._turns.end_user()
        pre = int(self.options.turn_preroll_ms * self.sample_rate / 1000)
        assert self._recording is not None
        user_pcm = self._recording.slice(self._turn_start - pre, event.sample + pre)
        if self._persona is not None and not self._ending:
            self._reply = self._spawn(self._persona.on_user_turn_ended(self, user_pcm), "reply")

    async def _barge_in(self) -> None:
        if self._reply is not None and not self._reply.done():
            self._reply.cancel()
        assert self._player is not None
        if self._player.interrupt():
            self._log("agent", "barge_in")
            assert self._dialect is not None
            await self._send(self._dialect.clear())
            await self._turns.end_agent(interrupted=True)

    # -- outgoing ------------------------------------------------------------------------------
    async def _send(self, frame: dict[str, Any]) -> None:
        async with self._send_lock:
            await self.ws.send(json.dumps(frame))
        self.frames_out.append(frame)
        self._log("out", str(frame.get("event", frame.get("type"))))

    async def _send_audio(self, item: Speech, pcm: np.ndarray) -> bool:
        """Send one chunk unless `item` was cut meanwhile; the check and the send happen under
        the send lock, so no chunk of a cut reply can follow its `clear`."""
        assert self.setup is not None and self._dialect is not None
        frame = json.dumps(self._dialect.audio(self.setup.audio.encode(pcm)))
        async with self._send_lock:
            if item.cancelled:
                return False
            await self.ws.send(frame)
        return True

    async def _on_speech(self, item: Speech | None, what: str) -> None:
        self._log("agent", f"speech_{what}")
        if what == "started" and item is not None:
            await self._turns.agent_speaks(item.text)
        elif what == "idle":
            await self._turns.end_agent(interrupted=False)

    async def _emit_turn(self, name: str, **fields: Any) -> None:
        """Turn events: always on Managed Agents, on Line only with `line_turn_events`."""
        if self.protocol == "agents" or self.options.line_turn_events:
            assert self._dialect is not None
            await self._send(self._dialect.frame(name, **fields))

    async def _enqueue_action(self, kind: str, arg: str) -> Action:
        await self.wait_started(self.options.start_timeout)
        action = Action(kind, arg)
        assert self._player is not None
        if self.closed:
            action.done.cancel()
        else:
            self._player.enqueue(action)
        return action

    async def _run_action(self, action: Any) -> None:
        assert isinstance(action, Action) and self._dialect is not None
        try:
            if action.kind == "transfer":
                assert isinstance(self._dialect, LineDialect)
                await self._send(self._dialect.transfer(action.arg))
            elif action.kind == "end_call":
                await self._turns.end_agent(interrupted=False)
                reason = CALL_ENDED
                if self.options.end_call_reason_in_close:
                    reason = f"{CALL_ENDED}, reason: {action.arg}"
                self._log("agent", "end_call")
                await self.ws.close(1000, reason)
        finally:
            if not action.done.done():
                action.done.set_result(None)

    def _log(self, direction: str, event: str) -> None:
        entry = ConnEvent(self.clock.monotonic(), direction, event)
        self.events.append(entry)
        self._counts[event] += 1
        for name, count, fut in self._waiters:
            if name == event and self._counts[event] >= count and not fut.done():
                fut.set_result(entry)

