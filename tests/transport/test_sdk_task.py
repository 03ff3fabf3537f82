"""Text tasks sent by the page over the `events` channel (`FacecastAvatar.task(text)`), against
the real app (REST, session manager, engines, renderer, WebRTC) with a plain aiortc client."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn
from tests.conftest import make_settings

from facecast.api.app import create_app
from facecast.clock import SystemClock
from facecast.sessions.keys import create_api_key
from facecast.testing.cartesia_agent import CartesiaStandIn
from facecast.transport.client import FacecastClient

pytestmark = pytest.mark.slow


@dataclass
class LiveServer:
    base_url: str
    auth: dict[str, str]
    agent: CartesiaStandIn

    async def create(self, engine: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            r = await http.post(f"{self.base_url}/api/v1/sessions", headers=self.auth,
                                json={"conversation_engine": engine, "render_model": "small"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    async def session(self, sid: str) -> dict[str, Any]:
        async with httpx.AsyncClient() as http:
            r = await http.get(f"{self.base_url}/api/v1/sessions/{sid}", headers=self.auth)
        return dict(r.json())

    async def delete(self, sid: str) -> None:
        async with httpx.AsyncClient() as http:
            await http.delete(f"{self.base_url}/api/v1/sessions/{sid}", headers=self.auth)


@pytest.fixture
async def live(tmp_path) -> AsyncIterator[LiveServer]:
    """The real app on a real uvicorn (127.0.0.1:0), loopback ICE, a stand-in Cartesia agent."""
    async with CartesiaStandIn(host="127.0.0.1", port=0, persona=None) as agent:
        settings = make_settings(tmp_path, webrtc_loopback=True, cartesia_url=agent.url)
        app = create_app(settings, clock=SystemClock())
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        task = asyncio.create_task(server.serve(), name="test-uvicorn")
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.01)
            assert not task.done()
        port = server.servers[0].sockets[0].getsockname()[1]
        key, _ = await create_api_key(app.state.services.db, "t", SystemClock().now())
        try:
            yield LiveServer(f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {key}"}, agent)
        finally:
            server.should_exit = True
            await task


async def wait_event(client: FacecastClient, match: Callable[[dict[str, Any]], bool],
                     timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        for _, event in client.events:
            if match(event):
                return event
        if time.monotonic() > deadline:
            raise TimeoutError(f"no such event; got {client.event_types()}")
        await asyncio.sleep(0.02)


async def connect(client: FacecastClient) -> None:
    """Connected, and the `events` channel open (connect() returns on ICE+DTLS; SCTP follows)."""
    await client.connect()
    deadline = time.monotonic() + 5
    while client.channel.readyState != "open":
        if time.monotonic() > deadline:
            raise TimeoutError(f"events channel {client.channel.readyState}")
        await asyncio.sleep(0.01)


def task_states(client: FacecastClient, task_id: str) -> list[str]:
    return [e["state"] for _, e in client.events
            if e.get("type") == "task_state" and e.get("task_id") == task_id]


async def test_page_task_is_spoken_on_text_echo(live) -> None:
    s = await live.create({"type": "text-echo", "tts": {"voice": "en-us"}})
    client = FacecastClient(live.base_url, s["token"])
    await connect(client)
    try:
        client.send({"type": "task", "text": "Hello from the page", "request_id": "r1"})
        created = await wait_event(client, lambda e: e.get("type") == "task_created")
        assert created["request_id"] == "r1" and created["task_id"].startswith("task_")
        task_id = created["task_id"]
        started = await wait_event(client, lambda e: e.get("type") == "avatar_started_speaking")
        ended = await wait_event(client, lambda e: e.get("type") == "avatar_ended_speaking")
        assert ended["segment_id"] == started["segment_id"] and ended["interrupted"] is False
        await wait_event(client, lambda e: e.get("type") == "task_state" and e["state"] == "done")
        assert task_states(client, task_id) == ["queued", "speaking", "done"]
        # the REST view records it like a task from POST /tasks
        info = await live.session(s["session_id"])
        assert [(t["task_id"], t["state"]) for t in info["tasks"]] == [(task_id, "done")]

        # refused tasks answer with an error carrying the request id; the session goes on
        for bad, rid in (("", "r2"), ("   ", 7), (None, "r4"), ("x" * 5001, "r5")):
            client.send({"type": "task", "text": bad, "request_id": rid})
            err = await wait_event(client, lambda e, rid=rid: e.get("type") == "error"
                                   and e.get("request_id") == rid)
            assert err["code"] == "invalid_request" and err["session_id"] == s["session_id"], err
        assert not [e for _, e in client.events if e.get("type") == "session_ended"]
        assert len((await live.session(s["session_id"]))["tasks"]) == 1
    finally:
        await client.close()
        await live.delete(s["session_id"])


async def test_page_task_on_cartesia_is_recorded_not_spoken(live) -> None:
    s = await live.create({"type": "cartesia", "agent_id": "a", "access_token": "t"})
    client = FacecastClient(live.base_url, s["token"])
    await connect(client)
    try:
        await (await live.agent.next_connection(10)).wait_started()
        client.send({"type": "task", "text": "Tell them the news", "request_id": "c1"})
        created = await wait_event(client, lambda e: e.get("type") == "task_created")
        assert created["request_id"] == "c1"
        await wait_event(client, lambda e: e.get("type") == "task_state")
        assert task_states(client, created["task_id"]) == ["recorded"]
        info = await live.session(s["session_id"])
        assert [(t["task_id"], t["state"]) for t in info["tasks"]] == [(created["task_id"], "recorded")]
        assert "avatar_started_speaking" not in client.event_types()
    finally:
        await client.close()
        await live.delete(s["session_id"])

