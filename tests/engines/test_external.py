"""ExternalEngine against the stand-in external engine, on loopback, with a real playout clock."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http import HTTPStatus

import numpy as np
import pytest
from pydantic import SecretStr
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from facecast.config import Settings
from facecast.engines.config import ExternalEngineConfig
from facecast.engines.external import ExternalEngine
from facecast.errors import EngineConnectionError
from facecast.media.playout import PlaybackEvent, SpeechBuffer
from facecast.sessions.state import EndReason, TaskState
from facecast.testing.external_engine import ExternalEngineStandIn
from facecast.testing.host import RecordingHost

SR = 24_000
SECRET = "Bearer s3cret-do-not-log"
CREATED = "avatar.speech.segment.created"
CLOSED = "avatar.speech.segment.closed"
STARTED = "avatar.speech.segment.playback.started"
ENDED = "avatar.speech.segment.playback.ended"
INTERRUPTED = "avatar.speech.segment.playback.interrupted"
SEGMENT_EVENTS = (CREATED, CLOSED, STARTED, ENDED, INTERRUPTED)


def tone(seconds: float, freq: float = 220.0, seed: int = 0) -> np.ndarray:
    """A tone with a little noise so every sample is distinguishable."""
    t = np.arange(int(seconds * SR)) / SR
    rng = np.random.default_rng(seed)
    wave = 8000 * np.sin(2 * np.pi * freq * t) + rng.integers(-500, 500, t.size)
    return wave.astype(np.int16)


@dataclass
class Rig:
    host: RecordingHost
    engine: ExternalEngine
    engine_side: ExternalEngineStandIn
    timeline: list[tuple[str, float, PlaybackEvent]]

    async def settle(self, seconds: float = 0.15) -> None:
        await asyncio.sleep(seconds)


def make_engine(url: str, host: RecordingHost, sample_rate: int = 24000,
                headers: dict[str, str] | None = None) -> ExternalEngine:
    config = ExternalEngineConfig.model_validate({
        "type": "external", "url": url, "audio": {"user": {"sample_rate": sample_rate}},
        "headers": headers or {"Authorization": SECRET}})
    engine = ExternalEngine(config, host, Settings(engine_connect_timeout=2.0))
    host.engine = engine
    return engine


async def _rig(realtime: bool, sample_rate: int = 24000,
               capacity_seconds: float | None = None) -> AsyncIterator[Rig]:
    async with ExternalEngineStandIn() as engine_side:
        host = RecordingHost(mode="explicit")
        if capacity_seconds is not None:   # a small playout buffer: facecast's queue fills up
            host.speech = SpeechBuffer(mode="explicit", capacity_seconds=capacity_seconds)
            host.speech.subscribe(host._on_playback)
        timeline: list[tuple[str, float, PlaybackEvent]] = []
        host.speech.subscribe(lambda ev: timeline.append((ev.kind, time.monotonic(), ev)))
        engine = make_engine(engine_side.url, host, sample_rate)
        host.start_clock(realtime=realtime)
        await engine.start()
        await engine_side.wait_connected()
        try:
            yield Rig(host, engine, engine_side, timeline)
        finally:
            await engine.close()
            await host.stop_clock()


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    async for r in _rig(realtime=True):
        yield r


@pytest.fixture
async def fast_rig() -> AsyncIterator[Rig]:
    """The media clock reads as fast as it can: for bit-exactness, not timing."""
    async for r in _rig(realtime=False):
        yield r


# -- connection -------------------------------------------------------------------------------
async def test_headers_reach_the_engine_and_never_the_logs(caplog: pytest.LogCaptureFixture
                                                           ) -> None:
    caplog.set_level(logging.DEBUG)
    async with ExternalEngineStandIn() as engine_side:
        host = RecordingHost(mode="explicit")
        engine = make_engine(engine_side.url + "?token=abc", host,
                             headers={"Authorization": SECRET, "X-Api-Key": "k3y-secret"})
        await engine.start()
        await engine_side.wait_connected()
        await engine.close()
    assert engine_side.headers is not None
    assert engine_side.headers["Authorization"] == SECRET
    assert engine_side.headers["X-Api-Key"] == "k3y-secret"
    # everything but the engine's own side (the stand-in server may log what it received)
    text = "\n".join(r.getMessage() for r in caplog.records
                     if not r.name.startswith("facecast.testing"))
    assert "s3cret" not in text and "k3y-secret" not in text and "token=abc" not in text
    ours = [r for r in caplog.records if r.name.startswith("facecast.engines.external")]
    assert ours and all(getattr(r, "session_id", None) == "sess_test" for r in ours)


async def test_connect_refused_raises_engine_connection_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    engine = make_engine(f"ws://127.0.0.1:{port}/x", RecordingHost(mode="explicit"))
    with pytest.raises(EngineConnectionError, match="could not connect"):
        await engine.start()
    await engine.close()


async def test_handshake_rejected_raises_with_status_and_no_secret() -> None:
    async with ExternalEngineStandIn(reject_status=401) as engine_side:
        engine = make_engine(engine_side.url, RecordingHost(mode="explicit"))
        with pytest.raises(EngineConnectionError, match="HTTP 401") as info:
            await engine.start()
        assert "s3cret" not in str(info.value)
        assert info.value.code == "engine_error"


async def test_a_redirect_is_refused_and_its_target_never_contacted() -> None:
    """A 3xx is a refused connection: the headers (secrets) must not follow it elsewhere."""
    async with ExternalEngineStandIn() as target:
        def redirect(conn: ServerConnection, request: Request) -> Response:
            response = conn.respond(HTTPStatus.FOUND, "moved\n")
            response.headers["Location"] = target.url
            return response

        async def never(ws: ServerConnection) -> None:
            await ws.close()

        async with serve(never, "127.0.0.1", 0, process_request=redirect) as origin:
            port = origin.sockets[0].getsockname()[1]
            engine = make_engine(f"ws://127.0.0.1:{port}/agent", RecordingHost(mode="explicit"))
            with pytest.raises(EngineConnectionError) as info:
                await engine.start()
            await engine.close()
    assert str(info.value) == (f"external engine at ws://127.0.0.1:{port}/agent refused the "
                               "connection: HTTP 302")
    assert info.value.code == "engine_error"
    assert target.connections == 0 and target.headers is None   # never contacted


async def test_a_bad_header_value_is_refused_without_quoting_it() -> None:
    # the API refuses such a value at session creation (422); the engine checks again
    with pytest.raises(ValueError, match="printable ASCII") as refused:
        make_engine("ws://127.0.0.1:9", RecordingHost(mode="explicit"),
                    headers={"X-Key": "s3cret\r\nInjected: 1"})
    assert "s3cret" not in str(refused.value.errors(include_input=False))
    async with ExternalEngineStandIn() as engine_side:
        valid = make_engine(engine_side.url, RecordingHost(mode="explicit")).config
        config = valid.model_copy(update={"headers": {"X-Key": SecretStr("s3cret\r\nInjected: 1")}})
        host = RecordingHost(mode="explicit")
        engine = ExternalEngine(config, host, Settings(engine_connect_timeout=2.0))
        with pytest.raises(EngineConnectionError, match="invalid X-Key header") as info:
            await engine.start()
        assert "s3cret" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__context__ is None
        assert engine_side.connections == 0


# -- segments ---------------------------------------------------------------------------------
async def test_segment_lifecycle_in_order_with_ids(rig: Rig) -> None:
    pcm = tone(0.5)
    await rig.engine_side.speak(pcm, uid="reply-1", chunk_bytes=960)
    await rig.engine_side.wait_event(ENDED)
    events = rig.engine_side.of_type(*SEGMENT_EVENTS)
    assert [e["type"] for e in events] == [CREATED, CLOSED, STARTED, ENDED]
    seg_id = events[0]["segment_id"]
    assert all(e["segment_id"] == seg_id and e["segment_uid"] == "reply-1" for e in events)
    assert all(isinstance(e["timestamp"], float) for e in events[2:])
    assert np.array_equal(rig.host.played_audio(), pcm)
    # the next segment gets a new id
    await rig.engine_side.speak(tone(0.1), uid="reply-2")
    second = await rig.engine_side.wait_event(ENDED, segment_uid="reply-2")
    assert second.data["segment_id"] != seg_id


async def test_create_while_open_closes_the_previous_one_with_an_error(rig: Rig) -> None:
    side = rig.engine_side
    await side.create_segment("a")
    await side.send_audio(tone(0.2))
    await side.create_segment("b")
    await side.send_audio(tone(0.2, seed=1))
    await side.close_segment("b")
    await side.wait_event(ENDED, segment_uid="b")
    errors = side.of_type("error")
    assert errors[0]["subtype"] == "avatar.speech.segment.error"
    kinds = [(e["type"], e["segment_uid"]) for e in side.of_type(CREATED, CLOSED, ENDED)]
    assert kinds == [(CREATED, "a"), (CLOSED, "a"), (CREATED, "b"), (CLOSED, "b"),
                     (ENDED, "a"), (ENDED, "b")]
    assert rig.host.played_audio().size == 2 * int(0.2 * SR)


async def test_interrupt_mid_segment_reports_what_really_played(rig: Rig) -> None:
    side = rig.engine_side
    await side.speak(tone(3.0), uid="long", close=False)
    await side.wait_event(STARTED)
    await asyncio.sleep(0.5)
    await side.interrupt()
    ev = await side.wait_event(INTERRUPTED)
    played = rig.host.played_audio().size / SR
    assert 0.0 < played < 3.0          # cut mid-segment (how far in depends on the machine's load)
    assert abs(ev.data["played_duration"] - played) <= 0.020
    assert ev.data["segment_uid"] == "long"
    # the open segment was closed for the engine before the interrupt report; no "ended"
    types = [e["type"] for e in side.of_type(*SEGMENT_EVENTS)]
    assert types == [CREATED, STARTED, CLOSED, INTERRUPTED]
    await rig.settle(0.2)
    assert rig.host.played_audio().size / SR == played   # silence at once
    # audio after the interrupt needs a new segment; the next reply plays cleanly
    await side.send_audio(tone(0.1))
    await side.wait_event("error")
    await side.speak(tone(0.2, seed=3), uid="next")
    await side.wait_event(ENDED, segment_uid="next")
    assert rig.host.played_audio().size == int(played * SR) + int(0.2 * SR)


async def test_interrupt_ends_the_backlog_interrupted_in_order() -> None:
    """With a 1 s playout buffer: "a" (0.9 s) fills it and plays; "b" is created but all its
    audio waits in facecast's queue, as do the whole of "c" and "d". An interrupt ends all four
    interrupted, in order, and none of the queued ones is reported as heard."""
    async for r in _rig(realtime=True, capacity_seconds=1.0):
        side = r.engine_side
        await side.speak(tone(0.9), uid="a", chunk_bytes=48_000)
        await side.wait_event(STARTED, segment_uid="a")
        await side.speak(tone(1.5, seed=1), uid="b", chunk_bytes=48_000)
        await side.speak(tone(0.5, seed=2), uid="c", chunk_bytes=48_000)
        await side.speak(tone(0.2, seed=3), uid="d")
        await side.wait_event(CREATED, segment_uid="b")
        await asyncio.sleep(0.1)
        mark = len(side.events)
        await side.interrupt()
        await side.wait_event(INTERRUPTED, segment_uid="d")
        await r.settle(0.2)
        after = [(e.type, e.data["segment_uid"]) for e in side.events[mark:]]
        assert after == [(INTERRUPTED, "a"),
                         (CLOSED, "b"), (INTERRUPTED, "b"),
                         (CREATED, "c"), (CLOSED, "c"), (INTERRUPTED, "c"),
                         (CREATED, "d"), (CLOSED, "d"), (INTERRUPTED, "d")]
        durations = {e["segment_uid"]: e["played_duration"] for e in side.of_type(INTERRUPTED)}
        assert 0 < durations["a"] < 0.9
        assert durations["b"] == durations["c"] == durations["d"] == 0
        assert side.of_type(ENDED) == []
        played = r.host.played_audio().size
        assert played / SR == pytest.approx(durations["a"], abs=0.001)
        # each segment ended exactly once, and the next reply plays cleanly
        await side.speak(tone(0.2, seed=4), uid="next")
        await side.wait_event(ENDED, segment_uid="next")
        assert r.host.played_audio().size == played + int(0.2 * SR)
        assert len(side.of_type(INTERRUPTED)) == 4


async def test_audio_outside_a_segment_is_dropped_with_one_error(rig: Rig) -> None:
    side = rig.engine_side
    await side.send_audio(tone(0.3), chunk_bytes=960)
    err = await side.wait_event("error")
    assert err.data["subtype"] == "avatar.speech.segment.error"
    assert "outside a segment" in err.data["reason"]
    await rig.settle(0.2)
    assert rig.host.played_audio().size == 0
    assert len(side.of_type("error")) == 1          # one per stretch, not one per frame


async def test_close_without_open_segment_is_an_error(rig: Rig) -> None:
    await rig.engine_side.close_segment("nope")
    err = await rig.engine_side.wait_event("error")
    assert err.data["subtype"] == "avatar.speech.segment.error"


async def test_malformed_json_keeps_the_socket_open(rig: Rig) -> None:
    side = rig.engine_side
    await side.send_raw("{not json")
    err = await side.wait_event("error")
    assert err.data["subtype"] == "json.parsing.error" and err.data["reason"]
    await side.speak(tone(0.1), uid="after")
    await side.wait_event(ENDED, segment_uid="after")
    assert rig.host.end_requests == []


@pytest.mark.parametrize("frame", ['{"type": "avatar.dance"}', "[1, 2]", '{"no": "type"}'])
async def test_unknown_or_untyped_message_is_a_type_error(rig: Rig, frame: str) -> None:
    await rig.engine_side.send_raw(frame)
    err = await rig.engine_side.wait_event("error")
    assert err.data["subtype"] == "message.type.error"
    assert rig.host.end_requests == []


async def test_sdk_messages_both_ways(rig: Rig) -> None:
    await rig.engine_side.send_sdk_message({"caption": "hi", "n": [1, 2]})
    rig.engine.on_sdk_message({"clicked": "buy"})
    ev = await rig.engine_side.wait_event("sdk.message.receive")
    assert ev.data["data"] == {"clicked": "buy"}
    await rig.engine_side.wait_until(lambda: bool(rig.host.sdk_events))
    assert rig.host.sdk_events == [{"type": "sdk.message", "data": {"caption": "hi", "n": [1, 2]}}]


async def test_tasks_are_recorded_only(rig: Rig) -> None:
    await rig.engine.submit_task("task_1", "hello")
    assert rig.host.task_states == [("task_1", TaskState.RECORDED)]


# -- audio fidelity and timing ----------------------------------------------------------------
@pytest.mark.parametrize("chunk_bytes", [48, 4801, 48_000, 5_000_001])
async def test_any_chunk_size_plays_every_sample(fast_rig: Rig, chunk_bytes: int) -> None:
    """1 ms, odd-sized (the odd byte is carried to the next frame), 1 s and a 5 MB frame."""
    seconds = 110.0 if chunk_bytes > 1_000_000 else 1.5
    pcm = tone(seconds)
    await fast_rig.engine_side.speak(pcm, uid="x", chunk_bytes=chunk_bytes)
    await fast_rig.engine_side.wait_event(ENDED, timeout=20)
    assert np.array_equal(fast_rig.host.played_audio(), pcm)
    assert fast_rig.engine_side.of_type("error") == []


async def test_odd_trailing_byte_at_close_is_dropped_with_an_error(fast_rig: Rig) -> None:
    side = fast_rig.engine_side
    await side.speak(tone(0.1).tobytes() + b"\x01", uid="odd")
    await side.wait_event(ENDED)
    assert side.of_type("error")[0]["subtype"] == "avatar.speech.segment.error"
    assert fast_rig.host.played_audio().size == int(0.1 * SR)


async def test_frame_over_the_limit_ends_the_session_clearly(rig: Rig) -> None:
    await rig.engine_side.create_segment("huge")
    await rig.engine_side.send_raw(b"\0" * (9 * 1024 * 1024))
    end = await rig.host.wait_ended()
    assert end.reason == EndReason.ENGINE_ERROR and end.error_code == "engine_error"
    assert end.message is not None and "larger than" in end.message


async def test_fast_reply_plays_in_real_time(rig: Rig) -> None:
    pcm = tone(10.0)
    t0 = time.monotonic()
    await rig.engine_side.speak(pcm, uid="fast", chunk_bytes=960)
    sent_in = time.monotonic() - t0
    await rig.engine_side.wait_event(ENDED, timeout=15)
    # facecast owns the clock: the engine's burst is accepted at once (a generous liveness
    # guard; bench/external.py has the figures) and plays on the media clock, one 40 ms frame per
    # tick, with no gap, loss or stretch: 10 s = 250 ticks of 960 samples (a tick that fell
    # while the burst was still arriving may split one frame across two ticks)
    assert sent_in < 5.0
    sizes = [chunk.size for chunk in rig.host.played]
    assert len(sizes) in (250, 251) and all(n == 960 for n in sizes[1:-1])
    assert np.array_equal(rig.host.played_audio(), pcm)
    kinds = [kind for kind, _, _ in rig.timeline]
    assert kinds == ["started", "ended"]


# -- mic --------------------------------------------------------------------------------------
async def test_mic_is_resampled_into_20ms_frames() -> None:
    async for r in _rig(realtime=True, sample_rate=16000):
        side = r.engine_side
        mic = tone(1.0, freq=440.0)                                # 24 kHz in
        for i in range(0, mic.size, 240):                          # 10 ms pushes
            r.engine.push_mic(mic[i:i + 240], 24000)
            await asyncio.sleep(0)
        await side.wait_until(lambda: len(side.mic) >= 2 * 15_000)  # noqa: B023
        assert set(side.mic_frames) == {640}                       # 20 ms at 16 kHz
        got = side.mic_pcm().astype(np.float64)
        # a 440 Hz tone survives resampling: its spectrum peaks at 440 Hz
        spectrum = np.abs(np.fft.rfft(got[2000:14000]))
        assert abs(np.argmax(spectrum) * 16000 / 12000 - 440) < 3


async def test_mic_queue_is_bounded_and_drops_the_oldest(rig: Rig) -> None:
    mic = (np.arange(4 * SR) % 30000).astype(np.int16)           # 4 s in one go: 200 frames
    rig.engine.push_mic(mic, 24000)                               # never blocks
    assert rig.engine.mic_frames_dropped == 150
    await rig.engine_side.wait_until(lambda: len(rig.engine_side.mic) >= 2 * SR)
    assert np.array_equal(rig.engine_side.mic_pcm(), mic[-SR:])   # the newest second


# -- the end ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("code", "reason", "message"), [
    (1000, "goodbye", "external engine closed the connection with code 1000: goodbye"),
    (1001, "", "external engine closed the connection with code 1001"),
    (None, "", "external engine closed the connection (no close code)"),
])
async def test_engine_closing_politely_ends_agent_left_after_speech(
        rig: Rig, code: int | None, reason: str, message: str) -> None:
    await rig.engine_side.speak(tone(0.3), uid="bye", close=False)
    if code is None:
        await rig.engine_side.close_without_code()
    else:
        await rig.engine_side.close(code, reason)
    end = await rig.host.wait_ended()
    assert end.reason == EndReason.AGENT_LEFT and end.after_speech
    assert end.error_code is None and end.message == message
    await asyncio.wait_for(rig.host.speech.wait_idle(), 2)      # the open segment was closed
    assert rig.host.played_audio().size == int(0.3 * SR)


async def test_engine_killed_mid_speech_ends_agent_left_and_says_so(rig: Rig) -> None:
    await rig.engine_side.speak(tone(2.0), uid="dying", close=False)
    await rig.engine_side.wait_event(STARTED)
    rig.engine_side.kill()
    end = await rig.host.wait_ended()
    assert end.reason == EndReason.AGENT_LEFT and end.error_code is None
    assert not end.after_speech          # what was queued is dropped: the session ends now
    assert end.message == "connection to the external engine was lost (no close frame)"


@pytest.mark.parametrize(("code", "reason"), [(4001, "llm quota exceeded"), (1011, "crashed")])
async def test_engine_close_with_another_code_is_agent_left_with_the_code(
        rig: Rig, code: int, reason: str) -> None:
    await rig.engine_side.close(code, reason)
    end = await rig.host.wait_ended()
    assert end.reason == EndReason.AGENT_LEFT and end.error_code is None
    assert not end.after_speech
    assert end.message == f"external engine closed the connection with code {code}: {reason}"


async def test_unanswered_pings_end_the_session_agent_left(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    monkeypatch.setattr(ExternalEngine, "ping_interval", 0.2)
    monkeypatch.setattr(ExternalEngine, "ping_timeout", 0.3)
    monkeypatch.setattr(ExternalEngine, "close_timeout", 0.3)
    async for r in _rig(realtime=True):
        r.engine_side.freeze()
        end = await r.host.wait_ended(timeout=3)
        assert end.reason == EndReason.AGENT_LEFT and end.error_code is None
        assert end.message == ("external engine stopped answering pings "
                               "(ping timeout: no pong within 0.3 s)")


async def test_invalid_utf8_text_is_a_protocol_error(rig: Rig) -> None:
    """facecast closing the socket on bad data (1007) is the engine's fault, not a departure."""
    await rig.engine_side.connection.send(b"\xff\xfe not utf-8", text=True)
    end = await rig.host.wait_ended()
    assert end.reason == EndReason.ENGINE_ERROR and end.error_code == "engine_error"
    assert end.message is not None and "code 1007" in end.message


async def test_close_is_idempotent_and_silent(rig: Rig) -> None:
    await rig.engine.close()
    await rig.engine.close()
    await rig.engine_side.wait_disconnected()
    rig.engine.push_mic(tone(0.1), 24000)
    assert rig.host.end_requests == []


async def test_session_teardown_reports_the_cut_segments_then_closes(rig: Rig) -> None:
    side = rig.engine_side
    await side.speak(tone(0.4), uid="done")
    await side.wait_event(ENDED, segment_uid="done")
    await side.speak(tone(1.0), uid="playing")                      # closed, then playing
    await side.speak(tone(3.0, seed=1), uid="waiting", close=False)  # open, buffered behind it
    await side.wait_event(STARTED, segment_uid="playing")
    await asyncio.sleep(0.3)
    mark = len(side.events)
    await rig.engine.close()                                  # the session ends (DELETE, timeout)
    await side.wait_disconnected()
    after = [(e.type, e.data["segment_uid"]) for e in side.events[mark:]]
    assert after == [(INTERRUPTED, "playing"), (CLOSED, "waiting"), (INTERRUPTED, "waiting")]
    durations = {e["segment_uid"]: e["played_duration"] for e in side.of_type(INTERRUPTED)}
    assert 0.2 < durations["playing"] < 1.0 and durations["waiting"] == 0
    assert side.connection.close_code == 1000 and side.connection.close_reason == "session ended"


async def test_teardown_with_a_frozen_engine_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that stopped reading (full send buffers) holds teardown back by at most the
    close timeout plus 0.1 s for the last events, not until the keepalive gives up."""
    monkeypatch.setattr(ExternalEngine, "close_timeout", 0.2)
    async for r in _rig(realtime=True):
        await r.engine_side.speak(tone(2.0), uid="long", close=False)
        await r.engine_side.wait_event(STARTED)
        r.engine_side.freeze()
        for _ in range(30):                                   # fill every buffer on the way
            r.engine.on_sdk_message("x" * 1_000_000)
            await asyncio.sleep(0.005)
        t0 = time.monotonic()
        await r.engine.close()
        assert time.monotonic() - t0 < 0.2 + 0.1 + 0.3


async def test_interrupt_is_not_held_back_by_a_full_playout_buffer(rig: Rig) -> None:
    """130 s sent at once: 120 s fill the playout buffer, the rest waits in facecast's queue;
    an interrupt still acts at once and nothing of the queued audio plays afterwards."""
    side = rig.engine_side
    await side.speak(tone(130.0), uid="novel", chunk_bytes=48_000, close=False)
    await side.wait_event(STARTED)
    while rig.host.speech.buffered_samples < 119 * SR:  # noqa: ASYNC110 (host state)
        await asyncio.sleep(0.01)
    t0 = time.monotonic()
    await side.interrupt()
    ev = await side.wait_event(INTERRUPTED)
    assert ev.time - t0 < 2.0   # not behind the 130 s of queued audio (bench has the figure)
    await rig.settle(0.2)
    assert rig.host.speech.buffered_samples == 0 and rig.host.speech.is_idle()
    played = rig.host.played_audio().size
    await side.speak(tone(0.2), uid="next")
    await side.wait_event(ENDED, segment_uid="next")
    assert rig.host.played_audio().size == played + int(0.2 * SR)
