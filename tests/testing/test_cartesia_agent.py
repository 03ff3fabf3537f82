"""The Cartesia stand-in over real sockets, with a raw `websockets` client (no mocks).

Timing assertions compare sample counts against the clock with tolerances; user audio is sent
faster than real time (the stand-in's VAD runs on audio time) to keep the file fast.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from facecast.media.tts import synthesize
from facecast.testing.cartesia_agent import CartesiaStandIn, ParrotPersona, StandInOptions
from facecast.testing.cartesia_wire import mulaw_decode, mulaw_encode

SR = 24000
TONE_HZ = 300.0


# -- client helpers ---------------------------------------------------------------------------
def tone(seconds: float, rate: int = SR, level: float = 8000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.int16)


def silence(seconds: float, rate: int = SR) -> np.ndarray:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def b64(pcm: np.ndarray, fmt: str = "pcm_24000") -> str:
    raw = mulaw_encode(pcm) if fmt.startswith("mulaw") else pcm.astype("<i2").tobytes()
    return base64.b64encode(raw).decode()


class Client:
    """A raw client that records every frame with its arrival time."""

    def __init__(self, ws: ClientConnection, protocol: str, fmt: str) -> None:
        self.ws, self.protocol, self.fmt = ws, protocol, fmt
        self.rate = int(fmt.split("_")[1])
        self.key = "event" if protocol == "line" else "type"
        self.audio_event = "media_output" if protocol == "line" else "audio_output"
        self.frames: list[tuple[float, dict[str, Any]]] = []

    def audio_of(self, frame: dict[str, Any]) -> np.ndarray:
        payload = frame["media"]["payload"] if self.protocol == "line" else frame["audio"]
        raw = base64.b64decode(payload)
        return mulaw_decode(raw) if self.fmt.startswith("mulaw") else np.frombuffer(raw, "<i2")

    async def next(self, timeout: float = 3.0) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.recv(), timeout)
        frame = json.loads(msg)
        self.frames.append((time.monotonic(), frame))
        return frame

    async def until(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            frame = await self.next(max(0.01, deadline - time.monotonic()))
            if frame[self.key] == name:
                return frame

    async def drain(self, quiet: float = 0.3, timeout: float = 8.0) -> list[dict[str, Any]]:
        """Frames until nothing arrives for `quiet` seconds."""
        got: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got.append(await self.next(quiet))
            except TimeoutError:
                break
        return got

    async def wait_close(self, timeout: float = 8.0) -> ConnectionClosed:
        try:
            while True:
                await self.next(timeout)
        except ConnectionClosed as exc:
            return exc
        raise AssertionError("not closed")

    def audio_frames(self) -> list[tuple[float, np.ndarray]]:
        return [(t, self.audio_of(f)) for t, f in self.frames if f[self.key] == self.audio_event]

    def names(self) -> list[str]:
        return [f[self.key] for _, f in self.frames]

    async def speak(self, pcm: np.ndarray, chunk_s: float = 0.02) -> None:
        """Send mic audio in 20 ms chunks, faster than real time."""
        n = int(chunk_s * self.rate)
        for i in range(0, pcm.size, n):
            if self.protocol == "line":
                frame = {"event": "media_input", "stream_id": "s1",
                         "media": {"payload": b64(pcm[i:i + n], self.fmt)}}
            else:
                frame = {"type": "audio_input", "audio": b64(pcm[i:i + n], self.fmt)}
            await self.ws.send(json.dumps(frame))
            await asyncio.sleep(0)


async def open_line(agent: CartesiaStandIn, fmt: str = "pcm_24000", token: str = "tok",
                    **start: Any) -> Client:
    ws = await websockets.connect(agent.line_url("agent_1"),
                                  additional_headers={"Authorization": f"Bearer {token}"})
    await ws.send(json.dumps({"event": "start", "stream_id": "s1",
                              "config": {"input_format": fmt}, **start}))
    client = Client(ws, "line", fmt)
    assert (await client.next())["event"] == "ack"
    return client


async def open_agents(agent: CartesiaStandIn, fmt: str = "pcm_24000",
                      delivery: str = "speaking_pace") -> Client:
    ws = await websockets.connect(agent.agents_url("agent_1"),
                                  additional_headers={"X-API-Key": "tok"})
    await ws.send(json.dumps({"type": "session_create",
                              "audio": {"input_format": fmt, "output_delivery": delivery}}))
    client = Client(ws, "agents", fmt)
    assert (await client.next())["type"] == "session_ready"
    return client


@pytest.fixture
async def scripted() -> AsyncIterator[CartesiaStandIn]:
    async with CartesiaStandIn(persona=None) as agent:
        yield agent


# -- handshake and auth -----------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["line", "agents"])
async def test_missing_or_bad_token_is_refused_with_401(protocol: str) -> None:
    async with CartesiaStandIn(token="secret", persona=None) as agent:
        url = agent.line_url() if protocol == "line" else agent.agents_url()
        for headers, query in [({}, ""), ({"X-API-Key": "wrong"}, ""), ({}, "?access_token=no")]:
            with pytest.raises(InvalidStatus) as info:
                await websockets.connect(url + query, additional_headers=headers)
            assert info.value.response.status_code == 401
        good = [({"X-API-Key": "secret"}, ""), ({}, "?access_token=secret")]
        if protocol == "line":
            good.append(({"Authorization": "Bearer secret"}, ""))
        else:  # Managed Agents takes X-API-Key or access_token only
            with pytest.raises(InvalidStatus):
                await websockets.connect(url, additional_headers={"Authorization": "Bearer secret"})
        for headers, query in good:
            async with websockets.connect(url + query, additional_headers=headers):
                conn = await agent.next_connection()
                assert conn.protocol == protocol
        assert [status for status, _ in agent.rejected].count(401) >= 3


async def test_without_configured_token_any_credential_works_but_none_does_not(
        scripted: CartesiaStandIn) -> None:
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(scripted.line_url())
    assert info.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(scripted.url + "/nope", additional_headers={"X-API-Key": "k"})
    assert info.value.response.status_code == 404
    async with websockets.connect(scripted.line_url() + "?access_token=anything"):
        await scripted.next_connection()


@pytest.mark.parametrize("protocol", ["line", "agents"])
async def test_percent_encoded_agent_ids_are_decoded(scripted: CartesiaStandIn,
                                                     protocol: str) -> None:
    path = "/agents/stream/" if protocol == "line" else "/v1/agents/websocket/"
    for raw, agent_id in [("org%3Aagent.1", "org:agent.1"), ("org:agent.1", "org:agent.1"),
                          ("a%20b%2Fc%C3%A9", "a b/cé")]:
        async with websockets.connect(scripted.url + path + raw,
                                      additional_headers={"X-API-Key": "k"}):
            conn = await scripted.next_connection()
        assert (conn.protocol, conn.agent_id) == (protocol, agent_id)
    url = scripted.line_url("org:x.1") if protocol == "line" else scripted.agents_url("org:x.1")
    assert "org%3Ax.1" in url
    for bad in ["%FF", "a/b", ""]:                               # not UTF-8, two segments, none
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(scripted.url + path + bad, additional_headers={"X-API-Key": "k"})
        assert info.value.response.status_code == 404


@pytest.mark.parametrize("first", [
    {"event": "media_input", "stream_id": "s1", "media": {"payload": ""}},
    {"event": "start", "config": {"input_format": "opus_48000"}},
    "not json {",
])
async def test_line_first_frame_not_a_valid_start_closes(scripted: CartesiaStandIn,
                                                         first: Any) -> None:
    async with websockets.connect(scripted.line_url(), additional_headers={"X-API-Key": "k"}) as ws:
        await ws.send(first if isinstance(first, str) else json.dumps(first))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 3)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert info.value.rcvd.reason


async def test_line_ack_echoes_stream_config_agent_and_records_version(
        scripted: CartesiaStandIn) -> None:
    start = {"event": "start", "stream_id": "abc",
             "config": {"input_format": "pcm_16000", "voice_id": "v1"},
             "agent": {"system_prompt": "be brief", "introduction": "Hi"},
             "metadata": {"to": "+1", "from": "+2"}}
    url = scripted.line_url("ag_9") + "?cartesia_version=2026-01-01"
    headers = {"X-API-Key": "k", "Cartesia-Version": "2025-04-16"}
    async with websockets.connect(url, additional_headers=headers) as ws:
        await ws.send(json.dumps(start))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 3))
        conn = await scripted.next_connection()
    assert ack == {"event": "ack", "stream_id": "abc", "config": start["config"],
                   "agent": start["agent"]}
    assert conn.start_frame == start and conn.agent_id == "ag_9"
    assert conn.cartesia_version == "2026-01-01"  # the query wins over the header
    assert conn.headers is not None and conn.headers["Cartesia-Version"] == "2025-04-16"


# -- agent speech -----------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pcm_24000", "mulaw_8000", "pcm_44100"])
async def test_greeting_arrives_paced_at_real_time(fmt: str) -> None:
    text = "Hello there, nice to meet you." if fmt == "pcm_24000" else "Hello there."
    rate = int(fmt.split("_")[1])
    expected = synthesize(text, sample_rate=rate)
    persona = ParrotPersona(greeting=text)
    async with CartesiaStandIn(persona=persona) as agent:
        client = await open_line(agent, fmt)
        await client.drain(quiet=0.4)
        conn = await agent.next_connection()
    frames = client.audio_frames()
    assert sum(pcm.size for _, pcm in frames) == expected.size == conn.sent_samples
    assert {pcm.size for _, pcm in frames[:-1]} == {rate * 40 // 1000}  # 40 ms chunks
    opts = StandInOptions()
    t_first = frames[0][0]
    ahead_limit = (opts.initial_burst_ms + opts.chunk_ms) / 1000 + 0.06
    cumulative = 0
    for t, pcm in frames:
        cumulative += pcm.size
        # Never more than burst + one chunk ahead of real time.
        assert cumulative / rate - (t - t_first) <= ahead_limit
    span = frames[-1][0] - t_first
    audio_s = expected.size / rate
    # never ahead of real time (above); behind it only by scheduling delays on a loaded machine
    assert audio_s - ahead_limit - 0.1 <= span <= audio_s + 1.0
    if fmt == "mulaw_8000":  # decoded audio is the speech, not noise
        got = np.concatenate([pcm for _, pcm in frames]).astype(float)
        corr = np.corrcoef(got, expected.astype(float))[0, 1]
        assert corr > 0.99


async def test_barge_in_clears_and_stops_that_reply(scripted: CartesiaStandIn) -> None:
    client = await open_line(scripted)
    conn = await scripted.next_connection()
    speech = await conn.say(np.tile(tone(0.5, level=3000), 8))  # 4 s of agent speech
    await client.until("media_output")
    await asyncio.sleep(0.3)
    await client.speak(tone(0.3))
    await client.until("clear", timeout=2)
    after_clear = await client.drain(quiet=0.5)
    assert not [f for f in after_clear if f["event"] == "media_output"]
    await speech.wait(1)
    assert speech.interrupted and 0 < speech.sent_samples < speech.pcm.size
    names = [e.event for e in conn.events]
    assert names.index("user_turn_started") < names.index("clear")
    # The next reply plays normally after a clear.
    await client.speak(silence(0.8))
    await conn.wait_for("user_turn_ended", 2)
    nxt = await conn.say(tone(0.2))
    await nxt.wait(2)
    assert nxt.finished and (await client.until("media_output"))
    await client.ws.close()


async def test_non_interruptible_speech_is_never_cleared(scripted: CartesiaStandIn) -> None:
    client = await open_line(scripted)
    conn = await scripted.next_connection()
    speech = await conn.say(tone(1.0, level=3000), interruptible=False)
    await client.until("media_output")
    await client.speak(tone(0.3))
    await conn.wait_for("user_turn_started", 2)
    await speech.wait(3)
    await client.drain(quiet=0.3)
    assert "clear" not in client.names()
    assert sum(p.size for _, p in client.audio_frames()) == speech.pcm.size
    assert speech.finished and not speech.interrupted
    await client.ws.close()


async def test_parrot_answers_after_the_user_turn_pitch_shifted() -> None:
    persona = ParrotPersona(greeting="", prefix="", turns=5)
    async with CartesiaStandIn(persona=persona) as agent:
        client = await open_line(agent, "pcm_16000")
        conn = await agent.next_connection()
        await client.speak(np.concatenate([silence(0.2, 16000), tone(0.6, 16000)]))
        assert not client.audio_frames()
        await client.speak(silence(0.9, 16000))
        turn_end = await conn.wait_for("user_turn_ended", 2)
        started = await conn.wait_for("speech_started", 3)
        assert started.time >= turn_end.time
        await client.drain(quiet=0.3)
    answer = np.concatenate([p for _, p in client.audio_frames()]).astype(float)
    assert 0.6 <= answer.size / 16000 <= 1.0  # the turn (plus pre-roll), same duration
    spectrum = np.abs(np.fft.rfft(answer))
    peak = np.fft.rfftfreq(answer.size, 1 / 16000)[np.argmax(spectrum)]
    assert abs(peak - TONE_HZ * 2 ** (4 / 12)) < 10  # +4 semitones
    assert np.array_equal(conn.received_pcm()[3200:3200 + 9600], tone(0.6, 16000))


async def test_demo_persona_ends_the_call_after_n_turns() -> None:
    persona = ParrotPersona(greeting="Hi.", prefix="", goodbye="Bye.", turns=1)
    async with CartesiaStandIn(persona=persona) as agent:
        client = await open_line(agent)
        conn = await agent.next_connection()
        await conn.wait_for("speech_done", 3)
        await client.speak(np.concatenate([tone(0.3), silence(0.8)]))
        closed = await client.wait_close()
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "call ended by agent")
    goodbye = synthesize("Bye.", sample_rate=SR).size
    assert conn.sent_samples >= goodbye + int(0.3 * SR)


# -- agent actions -----------------------------------------------------------------------------
async def test_end_call_plays_queued_speech_first(scripted: CartesiaStandIn) -> None:
    client = await open_line(scripted)
    conn = await scripted.next_connection()
    speech = await conn.say("One, two.")
    await conn.end_call()
    await client.speak(tone(0.3))  # barge-in after end_call cuts nothing
    closed = await client.wait_close()
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "call ended by agent")
    frames = client.audio_frames()
    assert sum(p.size for _, p in frames) == speech.pcm.size
    assert "clear" not in client.names()
    # The close comes once the client has had time to play it all.
    assert client.frames[-1][0] - frames[0][0] >= speech.pcm.size / SR - 0.15


async def test_transfer_call_after_speech(scripted: CartesiaStandIn) -> None:
    client = await open_line(scripted)
    conn = await scripted.next_connection()
    await conn.say(tone(0.2))
    await conn.transfer_call("+15551234567")
    frame = await client.until("transfer_call")
    assert frame == {"event": "transfer_call", "stream_id": "s1",
                     "transfer": {"target_phone_number": "+15551234567"}}
    assert client.names().count("media_output") == 5
    await client.ws.close()


async def test_garbage_drop_and_custom_close(scripted: CartesiaStandIn) -> None:
    client = await open_line(scripted)
    conn = await scripted.next_connection()
    await conn.send_raw("garbage {")
    assert await asyncio.wait_for(client.ws.recv(), 2) == "garbage {"
    # Garbage from the client is logged and tolerated on Line.
    await client.ws.send("{{{")
    await client.ws.send(json.dumps({"event": "dtmf", "stream_id": "s1", "dtmf": "5"}))
    await conn.wait_for("dtmf", 2)
    assert "invalid" in [e.event for e in conn.events]
    await conn.drop()
    closed = await client.wait_close()
    assert closed.rcvd is None and closed.sent is None  # no close frame either way

    client = await open_line(scripted)
    conn = await scripted.next_connection()
    await conn.close(4001, "scripted close")
    closed = await client.wait_close()
    assert closed.rcvd is not None and (closed.rcvd.code, closed.rcvd.reason) == (
        4001, "scripted close")


async def test_idle_timeout_and_pings_keep_alive() -> None:
    async with CartesiaStandIn(persona=None, idle_timeout=0.5) as agent:
        client = await open_line(agent)
        start = time.monotonic()
        for _ in range(4):  # pings count as client frames
            await asyncio.sleep(0.25)
            await client.ws.ping()
        closed = await client.wait_close(timeout=3)
        elapsed = time.monotonic() - start
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (1000, "connection idle timeout")
    assert 1.4 <= elapsed <= 5.0   # kept alive by the pings; closed once they stop


# -- Managed Agents ---------------------------------------------------------------------------
async def test_agents_session_ready_and_greeting() -> None:
    persona = ParrotPersona(greeting="Hi.")
    async with CartesiaStandIn(persona=persona) as agent:
        ws = await websockets.connect(agent.agents_url("ag_2") + "?access_token=t")
        create = {"type": "session_create", "audio": {"input_format": "pcm_16000"},
                  "dynamic_variables": {"name": "Ada"}}
        await ws.send(json.dumps(create))
        client = Client(ws, "agents", "pcm_16000")
        ready = await client.next()
        conn = await agent.next_connection()
        await client.drain(quiet=0.4)
        await ws.close()
    assert ready["type"] == "session_ready" and ready["agent_id"] == "ag_2"
    assert ready["call_id"] and ready["agent_version_id"]
    assert ready["audio"]["input_format"] == "pcm_16000"
    assert sum(p.size for _, p in client.audio_frames()) == synthesize("Hi.", sample_rate=16000).size
    names = client.names()
    assert names[1] == "turn_started" and "turn_output_text_delta" in names
    assert names[-1] == "turn_ended" and conn.start_frame == create


@pytest.mark.parametrize("first", [
    {"type": "session_create", "audio": {"input_format": "pcm_16000"}, "bogus": 1},
    {"type": "session_create", "audio": {"input_format": "pcm_16000", "codec": "x"}},
    {"type": "audio_input", "audio": ""},
])
async def test_agents_bad_session_create_is_a_fatal_error(scripted: CartesiaStandIn,
                                                          first: dict[str, Any]) -> None:
    async with websockets.connect(scripted.agents_url(), additional_headers={"X-API-Key": "k"}) as ws:
        await ws.send(json.dumps(first))
        error = json.loads(await asyncio.wait_for(ws.recv(), 3))
        with pytest.raises(ConnectionClosed) as info:
            await asyncio.wait_for(ws.recv(), 3)
    assert error["type"] == "error" and error["fatal"] is True
    assert error["code"] == "invalid_event" and error["message"]
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


async def test_agents_session_create_deadline() -> None:
    async with CartesiaStandIn(persona=None, start_timeout=0.3) as agent:
        async with websockets.connect(agent.agents_url(),
                                      additional_headers={"X-API-Key": "k"}) as ws:
            error = json.loads(await asyncio.wait_for(ws.recv(), 3))
            with pytest.raises(ConnectionClosed) as info:
                await asyncio.wait_for(ws.recv(), 3)
    assert error["type"] == "error" and error["fatal"] is True
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008


@pytest.mark.parametrize("fatal", [False, True])
async def test_agents_scripted_handshake_error(fatal: bool) -> None:
    err = ("invalid_dynamic_variables", "bad variable", fatal)
    async with CartesiaStandIn(persona=None, handshake_error=err) as agent:
        async with websockets.connect(agent.agents_url(),
                                      additional_headers={"X-API-Key": "k"}) as ws:
            await ws.send(json.dumps({"type": "session_create",
                                      "audio": {"input_format": "pcm_24000"}}))
            error = json.loads(await asyncio.wait_for(ws.recv(), 3))
            if fatal:
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 3)
                assert info.value.rcvd is not None and info.value.rcvd.code == 1008
            else:
                ready = json.loads(await asyncio.wait_for(ws.recv(), 3))
                assert ready["type"] == "session_ready"
    assert error == {"type": "error", "code": "invalid_dynamic_variables",
                     "message": "bad variable", "fatal": fatal}


async def test_agents_barge_in_turn_events_and_mulaw(scripted: CartesiaStandIn) -> None:
    client = await open_agents(scripted, "mulaw_8000")
    conn = await scripted.next_connection()
    speech = await conn.say(np.tile(tone(0.5, 8000, level=3000), 6))
    await client.until("audio_output")
    await client.speak(tone(0.3, 8000))
    await client.until("audio_output_clear", timeout=2)
    await client.speak(silence(0.8, 8000))
    await conn.wait_for("user_turn_ended", 2)
    frames = await client.drain(quiet=0.3)
    assert not [f for f in frames if f["type"] == "audio_output"]
    assert speech.interrupted
    ended = [f for _, f in client.frames if f["type"] == "turn_ended"]
    assert ended[0]["role"] == "agent" and ended[0]["interrupted"] is True
    assert ended[1]["role"] == "user" and ended[1]["interrupted"] is False
    for f in ended:
        assert {"turn", "role", "text", "interrupted", "start_time", "end_time",
                "tool_calls"} <= set(f)
    # mu-law input decodes to what was sent (within G.711 quantisation).
    received = conn.received_pcm()[:2400].astype(float)
    assert np.corrcoef(received, tone(0.3, 8000).astype(float))[0, 1] > 0.99
    # Unknown events get a non-fatal error; the session goes on.
    await client.ws.send(json.dumps({"type": "nonsense"}))
    error = await client.until("error")
    assert error["fatal"] is False and error["code"] == "invalid_event"
    await client.ws.send(json.dumps({"type": "dtmf_input", "digit": "7"}))
    await conn.wait_for("dtmf_input", 2)
    await client.ws.close()


async def test_agents_as_available_delivery_is_not_paced(scripted: CartesiaStandIn) -> None:
    client = await open_agents(scripted, delivery="as_available")
    conn = await scripted.next_connection()
    start = time.monotonic()
    speech = await conn.say(tone(1.0))
    await speech.wait(2)
    assert time.monotonic() - start < 0.9 and speech.finished   # 1 s of audio, not paced
    with pytest.raises(ValueError):
        await conn.transfer_call("+1555")
    await conn.end_call()
    closed = await client.wait_close()
    assert sum(p.size for _, p in client.audio_frames()) == SR
    assert closed.rcvd is not None and closed.rcvd.reason == "call ended by agent"
