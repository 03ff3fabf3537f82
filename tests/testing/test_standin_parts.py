"""Pieces of the Cartesia stand-in: VAD, mu-law, pitch shift, the pacer on virtual time, the CLI."""

from __future__ import annotations

import asyncio
import base64
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import websockets

from facecast.clock import VirtualClock
from facecast.testing.call_media import Recording, Speech, SpeechPlayer
from facecast.testing.cartesia_wire import (
    WireError,
    mulaw_decode,
    mulaw_encode,
    parse_line_start,
    parse_session_create,
)
from facecast.testing.persona import pitch_shift
from facecast.testing.vad import EnergyVAD, VadConfig


def _tone(seconds: float, rate: int, hz: float = 300.0, level: float = 6000.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (level * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def test_vad_hysteresis_and_hangover() -> None:
    rate = 16000
    vad = EnergyVAD(rate, VadConfig(start_ms=80, end_ms=600))
    quiet = np.zeros(int(0.5 * rate), np.int16)
    blip = _tone(0.04, rate)  # too short to start a turn
    events = vad.feed(np.concatenate([quiet, blip, quiet]))
    assert events == []
    # Speech with a 300 ms pause (shorter than the hangover) is one turn.
    speech = np.concatenate([_tone(0.5, rate), np.zeros(int(0.3 * rate), np.int16),
                             _tone(0.5, rate)])
    start_at = vad.position
    events = []
    for i in range(0, speech.size + rate, 160):  # arbitrary chunk sizes work
        chunk = speech[i:i + 160] if i < speech.size else np.zeros(160, np.int16)
        events += vad.feed(chunk)
    assert [e.kind for e in events] == ["start", "end"]
    assert events[0].sample == start_at
    assert abs(events[1].sample - (start_at + speech.size)) <= 160
    # Between stop_db and start_db: does not start a turn (hysteresis).
    vad2 = EnergyVAD(rate, VadConfig(start_db=-30, stop_db=-50))
    assert vad2.feed(_tone(1.0, rate, level=300)) == []  # about -40 dBFS


def test_mulaw_roundtrip_and_reference_codes() -> None:
    assert mulaw_encode(np.array([0, -1, 32767, -32768], np.int16)) == bytes([0xFF, 0x7E, 0x80, 0x00])
    x = _tone(0.1, 8000, level=12000)
    y = mulaw_decode(mulaw_encode(x)).astype(float)
    assert np.max(np.abs(y - x)) < 12000 * 0.04


def test_handshake_parsing() -> None:
    setup = parse_line_start({"event": "start", "config": {"input_format": "mulaw_8000"}})
    assert setup.audio.sample_rate == 8000 and setup.stream_id is None
    with pytest.raises(WireError):
        parse_line_start({"event": "start", "config": {}})
    with pytest.raises(WireError) as info:
        parse_session_create({"type": "session_create", "audio": {"input_format": "pcm_16000"},
                              "dynamic_variables": {"x": [1]}})
    assert info.value.code == "invalid_dynamic_variables"


def test_pitch_shift_keeps_duration_and_raises_pitch() -> None:
    rate = 24000
    x = _tone(1.0, rate, hz=200.0)
    y = pitch_shift(x, rate, 4.0)
    assert y.size == x.size and y.dtype == np.int16
    spectrum = np.abs(np.fft.rfft(y[2400:-2400].astype(float)))
    peak = np.fft.rfftfreq(y.size - 4800, 1 / rate)[np.argmax(spectrum)]
    assert abs(peak - 200.0 * 2 ** (4 / 12)) < 3


def test_recording_is_bounded_and_sliceable() -> None:
    rec = Recording(max_samples=1000)
    for i in range(10):
        rec.append(np.full(300, i, np.int16))
    assert rec.total == 3000 and rec.all().size <= 1300
    assert list(rec.slice(2850, 2910)) == [9] * 60
    assert list(rec.slice(2690, 2710)) == [8] * 10 + [9] * 10


async def test_pacing_holds_over_three_minutes_of_virtual_time() -> None:
    clock = VirtualClock()
    rate, sent = 24000, []

    async def send_audio(item: Speech, pcm: np.ndarray) -> bool:
        sent.append((clock.monotonic(), pcm.size))
        return True

    async def nothing(*_: object) -> None:
        return None

    player = SpeechPlayer(rate=rate, chunk_ms=40, burst_ms=80, paced=True, clock=clock,
                          send_audio=send_audio, on_action=nothing, on_speech=nothing)
    task = asyncio.create_task(player.run())
    for _ in range(3):  # three utterances back to back share one timeline
        player.enqueue(Speech(pcm=np.zeros(60 * rate + 7, np.int16)))
    worst = 0.0
    for step in range(1, 4600):
        clock.advance(0.04)
        for _ in range(3):
            await asyncio.sleep(0)
        total = sum(n for _, n in sent)
        expected = min(3 * (60 * rate + 7), step * 0.04 * rate + 0.08 * rate)
        worst = max(worst, abs(total - expected) / rate)
    task.cancel()
    assert sum(n for _, n in sent) == 3 * (60 * rate + 7)
    assert worst <= 0.041  # never off by more than one chunk, after 3 minutes either


async def test_module_entry_point_serves_the_demo_persona() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "facecast.testing.cartesia_agent", "--port", "0", "--token", "t0k",
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        url = line.split()[-1]
        assert url.startswith("ws://127.0.0.1:")
        async with websockets.connect(f"{url}/agents/stream/demo?access_token=t0k") as ws:
            await ws.send(json.dumps({"event": "start", "config": {"input_format": "pcm_16000"}}))
            assert json.loads(await asyncio.wait_for(ws.recv(), 5))["event"] == "ack"
            audio = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert audio["event"] == "media_output"
            assert len(base64.b64decode(audio["media"]["payload"])) == 2 * 640
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
