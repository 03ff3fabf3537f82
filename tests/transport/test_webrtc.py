"""The `/_sdk/v0/webrtc` contract with a plain aiortc client (no browser, no SDK)."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest

from facecast.config import Settings
from facecast.transport.client import FacecastClient, PcmTrack, SignallingError
from facecast.transport.standin import MOUTH
from facecast.transport.webrtc import WebRTCTransport

pytestmark = pytest.mark.slow


def tone(seconds: float, rate: int = 24_000, freq: float = 220.0, amp: int = 12_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.int16)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) if x.size else 0.0


async def wait_for(cond, timeout: float = 5.0, step: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(step)


async def test_plain_client_gets_video_audio_events_and_sends_mic(server) -> None:
    rt = server.manager.create()
    mic = PcmTrack(tone(1.0, 48_000, 440.0), 48_000)
    client = FacecastClient(server.base_url, rt.token, mic=mic)
    await client.connect()
    try:
        assert client.answer["type"] == "answer"
        assert client.answer["video"] == {"width": 512, "height": 512, "fps": 25, "alpha": "none"}
        # video at 25 fps, 512x512
        await wait_for(lambda: len(client.frame_times) >= 30, 5)
        times = client.frame_times[-25:]
        fps = (len(times) - 1) / (times[-1] - times[0])
        assert 12 <= fps <= 40   # video flows at about 25 fps (bench/ has the exact figures)
        assert client.video_frames[-1].image.shape == (512, 512, 3)
        # the mic reaches the runtime, mono int16 at the decoder's rate, with the tone in it
        await wait_for(lambda: rms(rt.mic_audio()) > 3000, 5)
        assert {rate for _, _, rate in rt.mic} == {48_000}
        # agent speech → audio at the client, speaking events in order, the mouth moves
        mark = time.monotonic()
        rt.speech.write_nowait(tone(1.0))
        started = await client.wait_event("avatar_started_speaking", since=mark)
        await wait_for(lambda: rms(client.received_audio(mark)[-960:]) > 3000, 3)
        def mouth_open() -> bool:
            return any(f.image[MOUTH[0], MOUTH[1]].mean() > 100
                       for f in client.video_frames if f.t > mark)
        await wait_for(mouth_open, 1)
        ended = await client.wait_event("avatar_ended_speaking", 3, since=mark)
        assert ended["segment_id"] == started["segment_id"] and ended["interrupted"] is False
        # page → runtime custom messages
        client.send({"type": "sdk.message", "data": {"hello": 1}})
        await wait_for(lambda: rt.sdk_messages == [{"hello": 1}])
    finally:
        await client.close()
    await wait_for(lambda: rt.leaves == 1 and not server.transport.peers)


async def test_barge_in_silences_the_client_quickly(server) -> None:
    rt = server.manager.create()
    client = FacecastClient(server.base_url, rt.token)
    await client.connect()
    try:
        rt.speech.write_nowait(tone(5.0))
        await client.wait_event("avatar_started_speaking", since=0)
        await wait_for(lambda: rms(client.received_audio()[-960:]) > 3000, 3)
        await asyncio.sleep(0.5)
        cleared = time.monotonic()
        rt.speech.clear()
        # the first received 20 ms chunk that is silent marks the cut
        def silent_at() -> float | None:
            for t, pcm in client.audio_chunks:
                if t > cleared and rms(pcm) < 300:
                    return t
            return None
        await wait_for(lambda: silent_at() is not None, 2)
        latency = silent_at() - cleared
        # behaviour, not a performance target (bench/e2e.py measures it): the cut is prompt
        assert latency < 1.0, latency
        assert all(rms(pcm) < 300 for t, pcm in client.audio_chunks if t > cleared + 0.3)
        ended = await client.wait_event("avatar_ended_speaking", 2, since=cleared)
        assert ended["interrupted"] is True
    finally:
        await client.close()


async def test_rejoin_with_the_same_token_keeps_the_session(server) -> None:
    rt = server.manager.create()
    first = FacecastClient(server.base_url, rt.token)
    await first.connect()
    await wait_for(lambda: len(first.frame_times) >= 5)
    await first.close(delete=False)            # a network drop: no DELETE
    second = FacecastClient(server.base_url, rt.token)
    await second.connect()
    try:
        assert second.peer_id != first.peer_id
        await wait_for(lambda: len(second.frame_times) >= 5)
        assert rt.joins == 2 and rt.ended is None
    finally:
        await second.close()


async def test_session_end_reaches_the_client_then_closes(server) -> None:
    rt = server.manager.create()
    client = FacecastClient(server.base_url, rt.token)
    await client.connect()
    try:
        await wait_for(lambda: len(client.frame_times) >= 3)
        mark = time.monotonic()
        await server.manager.end(rt.session_id, "termination_command_received")
        ev = await client.wait_event("session_ended", 3, since=mark)
        assert ev["reason"] == "termination_command_received"
        await wait_for(lambda: client.pc.connectionState in ("closed", "failed")
                       or not server.transport.peers, 5)
        # the token no longer joins
        with pytest.raises(SignallingError) as err:
            await FacecastClient(server.base_url, rt.token).connect()
        assert err.value.status == 409 and err.value.body["code"] == "session_ended"
    finally:
        await client.close()


async def test_transparent_background_stacks_the_alpha_matte(server) -> None:
    rt = server.manager.create(background="transparent")
    client = FacecastClient(server.base_url, rt.token)
    await client.connect()
    try:
        assert client.answer["video"]["alpha"] == "stacked"
        await wait_for(lambda: len(client.video_frames) >= 3)
        img = client.video_frames[-1].image
        assert img.shape == (1024, 512, 3)
        alpha = img[512:, :, 0].astype(int)
        assert alpha[256, 256] > 230 and alpha[256, 10] < 25   # opaque head, clear margin
    finally:
        await client.close()


async def test_two_sessions_stay_independent(server) -> None:
    a, b = server.manager.create(), server.manager.create()
    ca, cb = FacecastClient(server.base_url, a.token), FacecastClient(server.base_url, b.token)
    await asyncio.gather(ca.connect(), cb.connect())
    try:
        a.speech.write_nowait(tone(0.6))
        await ca.wait_event("avatar_started_speaking", since=0)
        await asyncio.sleep(0.8)
        assert "avatar_started_speaking" not in cb.event_types()
        assert rms(cb.received_audio()) < 300
    finally:
        await ca.close()
        await cb.close()


@pytest.mark.parametrize(("headers", "body", "status", "field"), [
    ({}, {"sdp": "v=0", "type": "offer"}, 401, "X-Session-Token"),
    ({"X-Session-Token": "nope"}, {"sdp": "v=0", "type": "offer"}, 401, None),
])
async def test_bad_tokens_are_refused(server, headers, body, status, field) -> None:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{server.base_url}/_sdk/v0/webrtc", json=body, headers=headers)
    assert r.status_code == status
    body = r.json()
    assert body["code"] and body["message"]
    if field:
        assert body["detail"][0]["loc"] == ["header", field]
    assert r.headers["access-control-allow-origin"] == "*"


@pytest.mark.parametrize(("body", "field"), [
    ({"sdp": "v=0\r\n", "type": "answer"}, "type"),
    ({"type": "offer"}, "sdp"),
    ({"sdp": "hello", "type": "offer"}, "sdp"),
    ({"sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video", "type": "offer"}, "sdp"),
    (["not", "an", "object"], "body"),
])
async def test_bad_offers_are_400_naming_the_field(server, body, field) -> None:
    rt = server.manager.create()
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{server.base_url}/_sdk/v0/webrtc", json=body,
                            headers={"X-Session-Token": rt.token})
    assert r.status_code == 400, r.text
    assert r.json()["detail"][0]["loc"] == ["body", field]
    assert rt.joins == 0 and not server.transport.peers


async def test_delete_is_idempotent_and_cors_preflight_answers(server) -> None:
    rt = server.manager.create()
    async with httpx.AsyncClient() as http:
        r = await http.delete(f"{server.base_url}/_sdk/v0/webrtc/peer_unknown",
                              headers={"X-Session-Token": rt.token})
        assert r.status_code == 204
        r = await http.options(f"{server.base_url}/_sdk/v0/webrtc")
        assert r.status_code == 204
        assert "X-Session-Token" in r.headers["access-control-allow-headers"]
        r = await http.get(f"{server.base_url}/sdk/facecast.js")
        assert r.status_code == 200 and "javascript" in r.headers["content-type"]


async def test_the_sdk_gets_the_servers_ice_servers(server) -> None:
    """`GET /_sdk/v0/config`: the server's STUN/TURN list in the browser's RTCIceServer shape,
    for a session token only."""
    raw = ('[{"urls": "stun:stun.example.net:3478"},'
           ' {"urls": ["turn:turn.example.net:3478?transport=udp"], "username": "u", "credential": "c"}]')
    transport = WebRTCTransport(Settings(ice_servers=raw, webrtc_loopback=True))
    try:
        assert transport.browser_ice_servers == [
            {"urls": "stun:stun.example.net:3478"},
            {"urls": ["turn:turn.example.net:3478?transport=udp"], "username": "u",
             "credential": "c"}]
    finally:
        await transport.aclose()
    rt = server.manager.create()
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{server.base_url}/_sdk/v0/config", headers={"X-Session-Token": rt.token})
        assert r.status_code == 200 and r.json() == {"ice_servers": []}
        assert r.headers["access-control-allow-origin"] == "*"
        r = await http.get(f"{server.base_url}/_sdk/v0/config")
        assert r.status_code == 401 and r.json()["detail"][0]["loc"] == ["header", "X-Session-Token"]
        r = await http.get(f"{server.base_url}/_sdk/v0/config", headers={"X-Session-Token": "nope"})
        assert r.status_code == 401
