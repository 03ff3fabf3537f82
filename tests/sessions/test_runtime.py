"""The real session runtime: engine + playout + renderer + media clock, driven through the API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import pytest

from facecast.api.app import create_app
from facecast.clock import SystemClock
from facecast.sessions.keys import create_api_key
from tests.conftest import make_settings
from tests.polling import until


class RecordingSink:
    def __init__(self) -> None:
        self.audio: list[tuple[int, np.ndarray]] = []
        self.video: list[tuple[int, np.ndarray]] = []

    def push_audio(self, index: int, pcm: np.ndarray) -> None:
        self.audio.append((index, pcm))

    def push_video(self, index: int, image: np.ndarray) -> None:
        self.video.append((index, image))

    def flush(self) -> int:
        return 0


@dataclass
class MediaPeer:
    peer_id: str
    sink: RecordingSink = field(default_factory=RecordingSink)
    events: list[dict[str, Any]] = field(default_factory=list)
    closed: bool = False
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def send_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        self.changed.set()

    async def close(self) -> None:
        self.closed = True

    async def wait_for(self, kind: str, timeout: float = 20.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                for ev in self.events:
                    if ev["type"] == kind:
                        return ev
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def live_app(tmp_path, request) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Any]]:
    overrides = getattr(request, "param", {})
    app = create_app(make_settings(tmp_path, **overrides), clock=SystemClock())
    async with app.router.lifespan_context(app):
        key, _ = await create_api_key(app.state.services.db, "t", SystemClock().now())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                     base_url="http://facecast.test") as client:
            yield client, {"Authorization": f"Bearer {key}"}, app.state.manager


async def test_text_echo_task_is_spoken_with_moving_mouth(live_app) -> None:
    client, auth, manager = live_app
    r = await client.post("/api/v1/sessions", headers=auth, json={
        "conversation_engine": {"type": "text-echo", "tts": {"voice": "en-us"}}, "render_model": "small"})
    assert r.status_code == 200, r.text
    sid = r.json()["session_id"]
    r = await client.post(f"/api/v1/sessions/{sid}/tasks", headers=auth, json={"text": "Hello there, friend."})
    task_id = r.json()["task_id"]
    peer = MediaPeer("p1")
    await manager.join(sid, peer)
    started = await peer.wait_for("avatar_started_speaking")
    ended = await peer.wait_for("avatar_ended_speaking")
    assert ended["segment_id"] == started["segment_id"] and ended["interrupted"] is False
    await asyncio.sleep(0.6)  # some idle frames after the speech
    await manager.settle()
    info = (await client.get(f"/api/v1/sessions/{sid}", headers=auth)).json()
    assert info["state"] == "active"
    assert [(t["task_id"], t["state"]) for t in info["tasks"]] == [(task_id, "done")]

    sink = peer.sink
    assert sink.video and all(img.shape == (256, 256, 3) for _, img in sink.video)
    # audio is continuous on the frame clock, one 960-sample frame per index
    indices = [i for i, _ in sink.audio]
    assert indices == list(range(indices[0], indices[0] + len(indices)))
    speech = [i for i, pcm in sink.audio if np.abs(pcm).max() > 500]
    assert len(speech) > 10
    frames = dict(sink.video)
    speaking = [frames[i] for i in speech if i in frames]
    silent = [img for i, img in sink.video if i > speech[-1] + 8]
    assert speaking and silent
    # the face changes while it speaks (mouth), more than idle motion alone does
    motion_speaking = max(np.abs(f.astype(int) - silent[-1].astype(int)).mean() for f in speaking)
    assert motion_speaking > 1.0

    r = await client.delete(f"/api/v1/sessions/{sid}", headers=auth)
    assert r.json()["end_reason"] == "termination_command_received"
    assert peer.events[-1] == {"type": "session_ended", "reason": "termination_command_received",
                               "session_id": sid}
    assert peer.closed


async def test_engine_connect_failure_ends_with_engine_error(live_app) -> None:
    client, auth, manager = live_app
    r = await client.post("/api/v1/sessions", headers=auth, json={
        "conversation_engine": {"type": "external", "url": "ws://127.0.0.1:9/nothing-here"}})
    sid = r.json()["session_id"]
    peer = MediaPeer("p1")
    await manager.join(sid, peer)
    error = await peer.wait_for("error")
    assert error["code"] == "engine_error" and error["session_id"] == sid
    ended = await peer.wait_for("session_ended")
    assert ended["reason"] == "engine_error"
    await manager.settle()
    info = (await client.get(f"/api/v1/sessions/{sid}", headers=auth)).json()
    assert info["state"] == "ended" and info["end_reason"] == "engine_error"
    assert info["end_message"]


@pytest.mark.parametrize("live_app", [{"engine_connect_timeout": 120.0}], indirect=True)
async def test_ending_while_the_engine_connects_closes_the_half_open_socket(live_app) -> None:
    """DELETE during the engine's WebSocket upgrade must not leave an agent call behind
    (nor wait for the connect timeout, two minutes here)."""
    client, auth, manager = live_app
    accepted = asyncio.Event()
    closed = asyncio.Event()

    async def silent_server(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.set()
        await reader.read()          # never answers the upgrade; returns at EOF
        closed.set()
        writer.close()

    server = await asyncio.start_server(silent_server, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        r = await client.post("/api/v1/sessions", headers=auth, json={
            "conversation_engine": {"type": "external", "url": f"ws://127.0.0.1:{port}/agent"}})
        sid = r.json()["session_id"]
        peer = MediaPeer("p1")
        await manager.join(sid, peer)
        await asyncio.wait_for(accepted.wait(), 5)
        r = await asyncio.wait_for(client.delete(f"/api/v1/sessions/{sid}", headers=auth), 30)
        assert r.json()["end_reason"] == "termination_command_received"
        await asyncio.wait_for(closed.wait(), 30)   # the engine dropped its connection attempt
        await manager.settle()
        assert (await peer.wait_for("session_ended"))["reason"] == "termination_command_received"
    finally:
        server.close()
        await server.wait_closed()


async def test_the_engine_hears_one_microphone_the_newest_peers(live_app) -> None:
    """Two connections on one session (a rejoin overlapping the old one): the engine gets the
    newest peer's mic only, never both summed or interleaved; when it leaves, the other's again."""
    from facecast.testing.external_engine import ExternalEngineStandIn

    client, auth, manager = live_app
    async with ExternalEngineStandIn() as engine:
        r = await client.post("/api/v1/sessions", headers=auth, json={
            "conversation_engine": {"type": "external", "url": engine.url}, "render_model": "small"})
        sid = r.json()["session_id"]
        old, new = MediaPeer("old"), MediaPeer("new")
        await manager.join(sid, old)
        await manager.join(sid, new)
        await engine.wait_connected()
        runtime = manager.live(sid).runtime
        await until(timeout=10, pred=lambda: runtime._engine_ready)

        def burst(value: int, ms: int) -> np.ndarray:
            return np.full(24 * ms, value, dtype=np.int16)

        runtime.push_mic(burst(1000, 200), 24_000, "old")    # the only mic so far: heard
        runtime.push_mic(burst(2000, 300), 24_000, "new")    # the newer peer takes over
        runtime.push_mic(burst(1000, 300), 24_000, "old")    # dropped
        await manager.leave(sid, new)
        runtime.push_mic(burst(3000, 200), 24_000, "old")    # the only one left: heard again
        await until(timeout=10, pred=lambda: engine.mic_pcm().size >= 24 * 700)
        await asyncio.sleep(0.1)    # anything extra (a doubled burst) would arrive meanwhile
        heard = engine.mic_pcm()
        expected = np.concatenate([burst(1000, 200), burst(2000, 300), burst(3000, 200)])
        assert heard.size == expected.size and np.array_equal(heard, expected)
        await client.delete(f"/api/v1/sessions/{sid}", headers=auth)


async def test_an_uploaded_photo_talks(live_app, tmp_path) -> None:
    """A product's own portrait (scikit-image's public-domain astronaut) uploaded over REST, then
    a session with it: the live frames are that photo, and its mouth moves while it speaks."""
    import io

    import cv2

    data = pytest.importorskip("skimage.data")
    client, auth, manager = live_app
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    r = await client.post("/api/v1/avatars", headers=auth, data={"name": "Astronaut"},
                          files={"file": ("astronaut.jpg", io.BytesIO(jpg.tobytes()), "image/jpeg")})
    assert r.status_code == 201, r.text
    avatar_id = r.json()["avatar_id"]
    r = await client.post("/api/v1/sessions", headers=auth, json={
        "avatar_id": avatar_id, "render_model": "small",
        "conversation_engine": {"type": "text-echo", "tts": {"voice": "en-us"}}})
    sid = r.json()["session_id"]
    await client.post(f"/api/v1/sessions/{sid}/tasks", headers=auth, json={"text": "Hello, I am an astronaut."})
    peer = MediaPeer("p1")
    await manager.join(sid, peer)
    await peer.wait_for("avatar_started_speaking")
    await peer.wait_for("avatar_ended_speaking")
    await until(timeout=10, pred=lambda: len(peer.sink.video) > 0 and peer.sink.video[-1][0] > max(
        i for i, pcm in peer.sink.audio if np.abs(pcm).max() > 500) + 20)   # idle frames after it
    await client.delete(f"/api/v1/sessions/{sid}", headers=auth)

    frames = dict(peer.sink.video)
    speech = [i for i, pcm in peer.sink.audio if np.abs(pcm).max() > 500 and i in frames]
    silent = [img for i, img in peer.sink.video if i > speech[-1] + 8]
    assert len(speech) > 10 and len(silent) >= 10
    # the frames are the uploaded photo (as prepared: cropped around the face), at 256²
    stored = cv2.imread(str(tmp_path / "data" / "avatars" / avatar_id / "portrait.png"))
    photo = cv2.resize(cv2.cvtColor(stored, cv2.COLOR_BGR2RGB), (256, 256), interpolation=cv2.INTER_AREA)
    assert np.abs(silent[-1].astype(int) - photo.astype(int)).mean() < 12, "not the uploaded photo"
    # while it speaks the picture changes (the mouth), clearly more than idle motion alone
    motion = max(np.abs(frames[i].astype(int) - silent[-1].astype(int)).mean() for i in speech)
    idle = max(np.abs(f.astype(int) - silent[-1].astype(int)).mean() for f in silent[-10:])
    assert motion > 2 * idle + 0.5, (motion, idle)
