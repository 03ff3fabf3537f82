"""CartesiaEngine against the Cartesia stand-in, on loopback, with a real paced playout clock."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import numpy as np
import pytest
from pydantic import SecretStr
from tests.polling import until
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from facecast.clock import Clock, VirtualClock
from facecast.config import Settings
from facecast.engines.cartesia import CartesiaEngine
from facecast.engines.config import CartesiaEngineConfig
from facecast.errors import EngineConnectionError
from facecast.media.audio import Resampler
from facecast.media.playout import SpeechBuffer
from facecast.sessions.state import EndReason, TaskState
from facecast.testing.cartesia_agent import AgentConnection, CartesiaStandIn, ParrotPersona
from facecast.testing.host import RecordingHost

SR = 24_000
TOKEN = "tok_SECRET-agent-token.0123456789"
APIS = ["line", "agents"]


def tone(seconds: float, freq: float = 220.0, amp: float = 8000.0, rate: int = SR) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def numbered(n: int, base: int) -> np.ndarray:
    """Samples that say where they came from: `base + i % 20000` (sign of base = which reply)."""
    i = np.arange(n)
    return (np.sign(base) * (abs(base) + i % 20000)).astype(np.int16)




@dataclass
class Call:
    agent: CartesiaStandIn
    host: RecordingHost
    engine: CartesiaEngine
    conn: AgentConnection
    api: str

    def audio_frame(self, pcm: np.ndarray) -> dict[str, Any]:
        b64 = base64.b64encode(pcm.astype("<i2").tobytes()).decode()
        if self.api == "line":
            return {"event": "media_output", "stream_id": self.conn.stream_id,
                    "media": {"payload": b64}}
        return {"type": "audio_output", "audio": b64}

    def clear_frame(self) -> dict[str, Any]:
        if self.api == "line":
            return {"event": "clear", "stream_id": self.conn.stream_id}
        return {"type": "audio_output_clear"}

    async def blast(self, pcm: np.ndarray, chunk: int = 960) -> None:
        """Agent audio as fast as the socket takes it (an agent far ahead of playback)."""
        for i in range(0, pcm.size, chunk):
            await self.conn.send_json(self.audio_frame(pcm[i:i + chunk]))


def make_engine(url: str, api: str = "line", token: str = TOKEN, timeout: float = 3.0,
                host: RecordingHost | None = None, clock: Clock | None = None,
                agent_id: str = "agent_1") -> tuple[CartesiaEngine, RecordingHost]:
    host = host or RecordingHost(session_id="sess_cartesia")
    config = CartesiaEngineConfig(type="cartesia", agent_id=agent_id,
                                  access_token=SecretStr(token), api=api)  # type: ignore[arg-type]
    settings = Settings(cartesia_url=url, engine_connect_timeout=timeout)
    engine = CartesiaEngine(config, host, settings, clock=clock)
    host.engine = engine
    return engine, host


def own_tasks() -> list[asyncio.Task[Any]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("cartesia:")]


@asynccontextmanager
async def call(api: str = "line", engine_clock: Clock | None = None,
               **standin: Any) -> AsyncIterator[Call]:
    standin.setdefault("persona", None)
    async with CartesiaStandIn(**standin) as agent:
        engine, host = make_engine(agent.url, api, clock=engine_clock)
        host.start_clock()
        try:
            await engine.start()
            conn = await agent.next_connection()
            await conn.wait_started()
            yield Call(agent, host, engine, conn, api)
        finally:
            await engine.close()
            await engine.close()   # idempotent
            await host.stop_clock()
            assert own_tasks() == [], "leaked engine tasks"


# -- handshake and mic ----------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
async def test_handshake_and_mic_audio_reaches_the_agent(api: str) -> None:
    async with call(api) as c:
        headers = c.conn.headers
        assert headers is not None
        if api == "line":
            assert c.conn.auth == "bearer"
            assert headers["Authorization"] == f"Bearer {TOKEN}"
            assert headers["Cartesia-Version"] == "2025-04-16"
            assert c.conn.agent_id == "agent_1"
            assert c.conn.setup is not None
            assert c.conn.setup.frame == {"event": "start", "stream_id": "sess_cartesia",
                                          "config": {"input_format": "pcm_24000"}}
        else:
            assert c.conn.auth == "access_token"                 # a token, not an API key
            assert c.conn.query["access_token"] == TOKEN
            assert "X-API-Key" not in headers and "Authorization" not in headers
            assert headers["Cartesia-Version"] == "2026-08-14"
            assert c.conn.setup is not None
            assert c.conn.setup.frame == {"type": "session_create",
                                          "audio": {"input_format": "pcm_24000",
                                                    "output_delivery": "speaking_pace"}}
        # one second of 48 kHz mic audio, in 20 ms frames as WebRTC delivers it
        mic = (tone(1.0, 300, 3000, 48_000).astype(np.int32)
               + tone(1.0, 1234, 2000, 48_000)).astype(np.int16)
        for i in range(0, mic.size, 960):
            c.engine.push_mic(mic[i:i + 960], 48_000)
            if i % (960 * 10) == 0:
                await asyncio.sleep(0.001)
        await until(lambda: c.conn.received_pcm().size >= 23_000, what="mic audio at the agent")
        got = c.conn.received_pcm().astype(np.float64)
        assert got.size % 480 == 0                              # whole 20 ms chunks
        await asyncio.sleep(0.05)
        got = c.conn.received_pcm().astype(np.float64)
        assert got.size == 480 * c.engine.mic_chunks_sent        # every frame 20 ms at 24 kHz
        want = Resampler(48_000, SR).process(mic).astype(np.float64)
        n = min(got.size, want.size) - 200
        best = max(
            float(np.dot(got[lag:lag + n], want[:n])
                  / (np.linalg.norm(got[lag:lag + n]) * np.linalg.norm(want[:n]) + 1e-9))
            for lag in range(0, 100))
        assert best > 0.99


async def test_mic_queue_is_bounded_and_drops_oldest() -> None:
    async with CartesiaStandIn(persona=None) as agent:
        engine, host = make_engine(agent.url)
        # 3 s pushed before the agent is even connected: only the newest second is kept
        mic = numbered(3 * SR, 1000)
        for i in range(0, mic.size, 480):
            engine.push_mic(mic[i:i + 480], SR)
        await engine.start()
        conn = await agent.next_connection()
        try:
            await until(lambda: conn.received_pcm().size >= SR, what="queued mic audio")
            await asyncio.sleep(0.05)
            got = conn.received_pcm()
            assert np.array_equal(got[:SR], mic[-SR:])
            assert not got[SR:].any()                           # then only silence padding
        finally:
            await engine.close()


# -- agent speech -----------------------------------------------------------------------------------
async def test_greeting_is_heard() -> None:
    from facecast.media.tts import synthesize_async

    persona = ParrotPersona(greeting="Hello there.")
    expected = await synthesize_async("Hello there.", sample_rate=SR)
    async with call("line", persona=persona) as c:
        await c.conn.wait_for("speech_done", timeout=10)
        await until(lambda: c.host.speech.is_idle(), what="greeting played")
        played = c.host.played_audio()
        assert np.array_equal(played, expected)                 # every sample, in order
        kinds = [(e.kind, e.interrupted) for e in c.host.playback_events]
        assert kinds == [("started", False), ("ended", False)]
        assert c.host.sdk_events == []                          # speaking events are the runtime's


@pytest.mark.parametrize("api", APIS)
async def test_clear_drops_buffered_audio_at_once(api: str) -> None:
    async with call(api) as c:
        first = numbered(3 * SR, 1000)            # the reply that gets cut: 3 s sent at once
        await c.blast(first)
        await until(lambda: c.host.speech.buffered_samples + c.host.played_audio().size
                    >= first.size, what="first reply buffered")
        await asyncio.sleep(0.2)
        await c.conn.send_json(c.clear_frame())
        await until(lambda: any(e.interrupted for e in c.host.playback_events), what="clear")
        assert c.host.speech.buffered_samples == 0
        second = numbered(SR // 2, -1000)         # the next reply
        await c.blast(second)
        await until(lambda: c.host.speech.is_idle() and c.host.played_audio().size > 0
                    and c.host.played_audio()[-1] < 0, what="second reply played")
        played = c.host.played_audio()
        cut = int(np.count_nonzero(played > 0))
        interrupted = [e for e in c.host.playback_events if e.kind == "ended" and e.interrupted]
        assert len(interrupted) == 1
        assert 0 < cut < first.size // 2
        assert cut == interrupted[0].played_samples
        assert np.array_equal(played[:cut], first[:cut])        # nothing of it after the clear
        assert np.array_equal(played[cut:], second)             # the next reply starts cleanly
        segs = [(e.kind, e.segment.id, e.interrupted) for e in c.host.playback_events]
        assert [s[0] for s in segs] == ["started", "ended", "started", "ended"]
        assert segs[0][1] != segs[2][1] and segs[3][2] is False


async def test_barge_in_by_user_speech() -> None:
    async with call("line") as c:
        speech = await c.conn.say(numbered(4 * SR, 1000))     # paced like a real agent
        await until(lambda: c.host.played_audio().size > SR // 2, what="agent speaking")
        loud = tone(0.4, 440, 12000, 48_000)                    # the user talks over it
        for i in range(0, loud.size, 960):
            c.engine.push_mic(loud[i:i + 960], 48_000)
        await c.conn.wait_for("barge_in")
        await speech.wait(2)
        assert speech.interrupted
        await until(lambda: any(e.interrupted for e in c.host.playback_events), what="clear")
        await asyncio.sleep(0.3)
        played = c.host.played_audio()
        event = next(e for e in c.host.playback_events if e.interrupted)
        assert played.size == event.played_samples                 # nothing played after clear
        assert np.array_equal(played, numbered(4 * SR, 1000)[:played.size])


async def test_segments_open_on_audio_and_close_on_drain() -> None:
    async with call("line") as c:
        await (await c.conn.say(tone(0.3))).wait(3)
        await until(lambda: c.host.speech.is_idle(), what="first utterance played")
        await asyncio.sleep(0.2)
        await (await c.conn.say(tone(0.2, 330))).wait(3)
        await until(lambda: len(c.host.playback_events) == 4, what="second segment ended")
        events = c.host.playback_events
        assert [(e.kind, e.interrupted) for e in events] == [
            ("started", False), ("ended", False), ("started", False), ("ended", False)]
        assert events[0].segment is events[1].segment is not events[2].segment
        assert events[1].played_samples == int(0.3 * SR)
        assert events[3].played_samples == int(0.2 * SR)


async def test_full_playout_buffer_keeps_order_and_clear_still_wins() -> None:
    """With a tiny playout buffer the agent's audio waits in the engine (backpressure), in
    order; a `clear` is still read at once and drops that backlog too, including the chunk
    the engine was waiting to write."""
    host = RecordingHost(session_id="sess_cartesia")
    host.speech = SpeechBuffer(mode="auto", capacity_seconds=0.3)
    host.speech.subscribe(host._on_playback)
    async with CartesiaStandIn(persona=None) as agent:
        engine, host = make_engine(agent.url, host=host)
        host.start_clock()
        try:
            await engine.start()
            conn = await agent.next_connection()
            await conn.wait_started()
            c = Call(agent, host, engine, conn, "line")
            whole = numbered(SR, 1000)
            await c.blast(whole)
            await until(lambda: host.playback_events != [] and host.playback_events[-1].kind
                        == "ended", what="first reply played")
            assert np.array_equal(host.played_audio(), whole)       # all of it, in order
            host.played.clear()
            first = numbered(2 * SR, 1000)
            await c.blast(first)
            await until(lambda: host.played_audio().size > SR // 4, what="second reply playing")
            assert host.speech.buffered_samples <= int(0.3 * SR) + 960   # the rest waits in us
            await conn.send_json(c.clear_frame())
            await c.blast(numbered(SR // 4, -1000))
            await until(lambda: host.speech.is_idle() and host.played_audio()[-1] < 0,
                        what="next reply played")
            played = host.played_audio()
            cut = int(np.count_nonzero(played > 0))
            assert cut < SR
            assert np.array_equal(played[:cut], first[:cut])
            assert np.array_equal(played[cut:], numbered(SR // 4, -1000))
            # uneven chunks: a small one that would fit must not overtake a big one that waits
            host.played.clear()
            uneven = numbered(7000 + 4000 + 100, 1000)
            for a, b in [(0, 7000), (7000, 11000), (11000, 11100)]:
                await conn.send_json(c.audio_frame(uneven[a:b]))
                await asyncio.sleep(0.03)
            await until(lambda: host.played_audio().size == uneven.size, what="uneven played")
            assert np.array_equal(host.played_audio(), uneven)
        finally:
            await engine.close()
            await host.stop_clock()
            assert own_tasks() == []


async def test_odd_sized_audio_chunks_are_reassembled() -> None:
    async with call("line") as c:
        pcm = numbered(SR // 4, 1000)
        raw = pcm.astype("<i2").tobytes()
        for i in range(0, len(raw), 333):                          # odd byte counts
            payload = base64.b64encode(raw[i:i + 333]).decode()
            await c.conn.send_json({"event": "media_output", "stream_id": c.conn.stream_id,
                                    "media": {"payload": payload}})
        await until(lambda: c.host.played_audio().size == pcm.size, what="audio played")
        assert np.array_equal(c.host.played_audio(), pcm)


# -- agent actions --------------------------------------------------------------------------------
async def test_transfer_call_is_logged_and_ignored(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="facecast.engines")
    async with call("line") as c:
        await c.conn.transfer_call("+15551234567")
        await (await c.conn.say(tone(0.2))).wait(3)
        await until(lambda: c.host.played_audio().size == int(0.2 * SR), what="speech after it")
        assert c.host.end_requests == []
        assert not c.conn.closed
    assert any("transfer" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


@pytest.mark.parametrize("with_reason", [False, True])
async def test_end_call_is_agent_left_after_queued_speech(with_reason: bool) -> None:
    async with call("line", end_call_reason_in_close=with_reason) as c:
        await c.conn.say(tone(0.5))
        await c.conn.end_call("agent_ended")
        end = await c.host.wait_ended(5)
        assert end.reason is EndReason.AGENT_LEFT
        assert end.after_speech is True and end.error_code is None
        # all the speech queued before end_call is in the playout when the end is asked
        assert c.host.speech.buffered_samples + c.host.played_audio().size == int(0.5 * SR)
        await c.conn.wait_closed()
        assert c.conn.close_code == 1000
        assert len(c.host.end_requests) == 1


async def test_idle_timeout_is_agent_left() -> None:
    # the engine's clock never moves, so it never pads the mic with silence: nothing is sent
    async with call("line", engine_clock=VirtualClock(), idle_timeout=0.3) as c:
        end = await c.host.wait_ended(5)
        assert end.reason is EndReason.AGENT_LEFT
        assert c.conn.close_reason == "connection idle timeout"


@pytest.mark.parametrize(("api", "how"), [("line", "drop"), ("line", "close_1011"),
                                          ("agents", "fail")])
async def test_agent_connection_lost_mid_speech_is_engine_error(api: str, how: str) -> None:
    async with call(api) as c:
        await c.conn.say(tone(3.0))
        await until(lambda: c.host.played_audio().size > SR // 4, what="agent speaking")
        if how == "drop":
            await c.conn.drop()
        elif how == "fail":
            await c.conn.fail("agent crashed")
        else:
            await c.conn.close(1011, "agent crashed")
        end = await c.host.wait_ended(5)
        assert end.reason is EndReason.ENGINE_ERROR and end.error_code == "engine_error"
        if how == "drop":
            assert end.message is not None and "connection lost (1006)" in end.message
        elif how == "fail":
            assert end.message == "agent error: agent_failed: agent crashed"
        else:
            assert end.message == "agent connection closed unexpectedly (1011): agent crashed"
        assert end.after_speech is False
        await asyncio.sleep(0.05)
        assert len(c.host.end_requests) == 1


async def test_no_end_session_after_close() -> None:
    async with call("line") as c:
        await c.engine.close()
        await c.conn.wait_closed()
        assert c.conn.close_code == 1000
        assert c.host.end_requests == []


async def test_garbage_frames_are_tolerated(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="facecast.engines")
    async with call("line") as c:
        for junk in ["not json {", "[1, 2]", '"str"', "{}"]:
            await c.conn.send_raw(junk)
        await c.conn.send_raw(b"\x00\x01binary")
        await c.conn.send_json({"event": "who_knows", "x": 1})
        await c.conn.send_json({"event": "media_output", "stream_id": "s", "media": {}})
        await c.conn.send_json({"event": "media_output", "stream_id": "s",
                                "media": {"payload": "!!!not base64!!!"}})
        await c.conn.send_dtmf("5")
        await c.conn.send_custom({"k": "v"})
        await (await c.conn.say(tone(0.2))).wait(3)
        await until(lambda: c.host.played_audio().size == int(0.2 * SR), what="speech after junk")
        assert c.host.end_requests == []
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("facecast.engines")]
    assert sum("malformed" in m for m in messages) >= 4
    assert any("binary frame" in m for m in messages)
    assert any("unknown agent event 'who_knows'" in m for m in messages)


async def test_text_tasks_are_recorded_not_spoken() -> None:
    async with call("line") as c:
        await c.engine.submit_task("task_1", "Say this")
        await asyncio.sleep(0.1)
        assert c.host.task_states == [("task_1", TaskState.RECORDED)]
        assert c.host.played_audio().size == 0


# -- Managed Agents specifics ---------------------------------------------------------------------
async def test_managed_fatal_error_ends_the_session() -> None:
    async with call("agents") as c:
        await c.conn.send_json({"type": "error", "code": "invalid_event", "message": "meh",
                                "fatal": False})
        await asyncio.sleep(0.05)
        assert c.host.end_requests == []
        await c.conn.send_json({"type": "error", "code": "agent_failed",
                                "message": "the agent crashed", "fatal": True})
        end = await c.host.wait_ended(5)
        assert end.reason is EndReason.ENGINE_ERROR and end.error_code == "engine_error"
        assert end.message == "agent error: agent_failed: the agent crashed"
        await c.conn.close(1011, "agent failed")
        await asyncio.sleep(0.05)
        assert len(c.host.end_requests) == 1


async def test_managed_non_fatal_error_before_session_ready_is_tolerated(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="facecast.engines")
    err = ("invalid_dynamic_variables", "ignored variable x", False)
    async with call("agents", handshake_error=err) as c:
        assert c.conn.call_id is not None                        # session_ready came after
        c.engine.push_mic(numbered(SR // 10, 1000), SR)          # and the call works
        await until(lambda: c.conn.received_pcm().size >= SR // 10, what="mic audio")
        assert c.host.end_requests == []
    assert any("not fatal" in r.getMessage() and "invalid_dynamic_variables" in r.getMessage()
               for r in caplog.records)


async def test_managed_fatal_error_before_session_ready_fails_the_start() -> None:
    err = ("missing_dynamic_variables", "variable name is required", True)
    async with CartesiaStandIn(persona=None, handshake_error=err) as agent:
        engine, host = make_engine(agent.url, "agents")
        with pytest.raises(EngineConnectionError, match=r"the agent rejected the session: "
                                                        r"missing_dynamic_variables: variable"):
            await engine.start()
        await engine.close()
        assert len(agent.connections) == 1                       # never retried
        assert host.end_requests == [] and own_tasks() == []


async def test_managed_client_tool_call_is_refused() -> None:
    async with call("agents") as c:
        call_id = await c.conn.send_tool_call("lookup", {"q": 1}, expects_response=True)
        await c.conn.wait_for("client_tool_result")
        result = c.conn.frames_in[-1]
        assert result["tool_call_id"] == call_id and result["is_error"] is True


@pytest.mark.parametrize("api", APIS)
async def test_agent_ids_with_reserved_characters_reach_the_agent(api: str) -> None:
    async with CartesiaStandIn(persona=None) as agent:
        engine, _ = make_engine(agent.url, api, agent_id="org:agent.1")
        try:
            await engine.start()                               # sent as org%3Aagent.1
            conn = await agent.next_connection()
            assert conn.agent_id == "org:agent.1"
            assert agent.rejected == []
        finally:
            await engine.close()


async def test_managed_api_key_goes_in_a_header() -> None:
    async with CartesiaStandIn(persona=None, token="sk_car_key123") as agent:
        engine, _ = make_engine(agent.url, "agents", token="sk_car_key123")
        try:
            await engine.start()
            conn = await agent.next_connection()
            assert conn.auth == "x-api-key"
            assert conn.headers is not None and conn.headers["X-API-Key"] == "sk_car_key123"
            assert "access_token" not in conn.query
        finally:
            await engine.close()


# -- connection failures --------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
async def test_bad_token_is_refused_once(api: str) -> None:
    async with CartesiaStandIn(persona=None, token="the-right-token") as agent:
        engine, host = make_engine(agent.url, api, token=TOKEN)
        with pytest.raises(EngineConnectionError, match=r"the agent refused the credential \(HTTP 401\)") as info:
            await engine.start()
        assert TOKEN not in str(info.value) and TOKEN not in repr(info.value)
        assert len(agent.rejected) == 1                          # never retried
        assert host.end_requests == []
        await engine.close()
        assert own_tasks() == []


@pytest.mark.parametrize(("api", "token"), [("line", TOKEN), ("agents", "sk_car_key123")])
async def test_a_redirect_is_refused_and_never_followed(api: str, token: str) -> None:
    elsewhere: list[str] = []
    origin_hits: list[str] = []

    def record(connection: ServerConnection, request: Request) -> Response | None:
        elsewhere.append(request.path)
        return None

    async def hang_up(ws: ServerConnection) -> None:
        await ws.close()

    async with serve(hang_up, "127.0.0.1", 0, process_request=record) as target:
        tport = next(iter(target.sockets)).getsockname()[1]

        def redirect(connection: ServerConnection, request: Request) -> Response:
            origin_hits.append(request.path)
            response = connection.respond(HTTPStatus.FOUND, "moved\n")
            response.headers["Location"] = f"ws://127.0.0.1:{tport}/stolen?x=1"
            return response

        async with serve(hang_up, "127.0.0.1", 0, process_request=redirect) as origin:
            oport = next(iter(origin.sockets)).getsockname()[1]
            engine, host = make_engine(f"ws://127.0.0.1:{oport}", api, token=token)
            with pytest.raises(EngineConnectionError) as info:
                await engine.start()
            await engine.close()
    msg = str(info.value)
    assert msg.startswith("Cartesia refused the agent WebSocket upgrade (HTTP 302)")
    assert f"ws://127.0.0.1:{tport}/stolen" in msg and "x=1" not in msg
    assert token not in msg
    assert len(origin_hits) == 1                                # never retried
    assert elsewhere == []                                      # the credential went nowhere else
    assert host.end_requests == [] and own_tasks() == []


async def test_unreachable_agent() -> None:
    engine, _ = make_engine("ws://127.0.0.1:9")
    with pytest.raises(EngineConnectionError, match="cannot connect to the Cartesia agent"):
        await engine.start()


async def test_handshake_timeout() -> None:
    stop = asyncio.Event()
    handlers: list[asyncio.Task[Any]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handlers.append(asyncio.current_task())  # type: ignore[arg-type]
        await reader.read(65536)        # the upgrade request, never answered
        await stop.wait()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        engine, _ = make_engine(f"ws://127.0.0.1:{port}", timeout=0.3)
        with pytest.raises(EngineConnectionError, match=r"did not answer within 0.3s"):
            await engine.start()
    finally:
        stop.set()
        server.close()
        await server.wait_closed()
        await asyncio.gather(*handlers, return_exceptions=True)


# -- secrets --------------------------------------------------------------------------------------
@pytest.mark.parametrize("api", APIS)
async def test_access_token_never_logged(api: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with call(api) as c:
        c.engine.push_mic(tone(0.1), SR)
        await (await c.conn.say(tone(0.1))).wait(3)
        await c.conn.send_raw("garbage " + TOKEN)                # even echoed back by the agent
        await asyncio.sleep(0.1)
        assert TOKEN not in repr(c.engine)
    async with CartesiaStandIn(persona=None, token="other") as agent:
        engine, _ = make_engine(agent.url, api)
        with pytest.raises(EngineConnectionError):
            await engine.start()
    ours = [r for r in caplog.records if r.name.startswith("facecast.engines")]
    assert ours and all(getattr(r, "session_id", None) == "sess_cartesia" for r in ours)
    assert any("***" in r.getMessage() for r in ours)             # the credential was masked
    for r in ours:
        assert TOKEN not in r.getMessage()
        assert TOKEN not in caplog.handler.format(r)
    assert not [r for r in caplog.records
                if TOKEN in r.getMessage() and not r.name.startswith(("facecast.testing",
                                                                       "websockets.server"))]
