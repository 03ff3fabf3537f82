"""Shared fixtures: a real app (SQLite file, virtual clock) and an HTTP client for it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from facecast.api.app import create_app
from facecast.clock import VirtualClock
from facecast.config import Settings
from facecast.sessions.keys import create_api_key
from facecast.sessions.manager import LiveSession, SessionManager
from facecast.sessions.state import EndReason


class RecordingRuntime:
    """A stand-in session runtime for lifecycle tests: records what the manager asks of it.

    (The real runtime, with engines, renderer and WebRTC, is tested in its own suites.)
    """

    instances: list[RecordingRuntime] = []
    start_gate: asyncio.Event | None = None   # set by a test to hold start() open
    start_error: Exception | None = None      # set by a test to make start() fail

    def __init__(self, live: LiveSession, manager: SessionManager) -> None:
        self.session_id = live.id
        self.manager = manager
        self.calls: list[tuple[str, Any]] = []
        self.tasks: list[tuple[str, str]] = []
        self.stopped: tuple[EndReason, str | None, str | None] | None = None
        RecordingRuntime.instances.append(self)

    def attach_peer(self, peer: Any) -> None:
        self.calls.append(("attach", peer.peer_id))

    def detach_peer(self, peer: Any) -> None:
        self.calls.append(("detach", peer.peer_id))

    async def start(self) -> None:
        self.calls.append(("start", None))
        if RecordingRuntime.start_gate is not None:
            await RecordingRuntime.start_gate.wait()
        if RecordingRuntime.start_error is not None:
            raise RecordingRuntime.start_error

    async def submit_task(self, task_id: str, text: str) -> None:
        self.tasks.append((task_id, text))

    async def stop(self, reason: EndReason, error_code: str | None, message: str | None) -> None:
        assert self.stopped is None, "a runtime must be stopped exactly once"
        self.stopped = (reason, error_code, message)


@dataclass
class FakePeer:
    peer_id: str
    sink: Any = None
    events: list[dict[str, Any]] = field(default_factory=list)

    def send_event(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def close(self) -> None:
        pass


@dataclass
class AppCtx:
    app: FastAPI
    client: httpx.AsyncClient
    clock: VirtualClock
    key: str
    settings: Settings

    @property
    def manager(self) -> SessionManager:
        return self.app.state.manager

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    async def create_session(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"conversation_engine": {"type": "cartesia", "agent_id": "agent_1",
                                                        "access_token": "secret-token-123"}}
        body.update(overrides)
        r = await self.client.post("/api/v1/sessions", json=body, headers=self.auth)
        assert r.status_code == 200, r.text
        return r.json()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": f"sqlite:///{tmp_path}/facecast.db",
                              "data_dir": tmp_path / "data", "max_sessions": 3}
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[AppCtx]:
    settings = make_settings(tmp_path)
    clock = VirtualClock()
    app = create_app(settings, clock=clock, runtime_factory=RecordingRuntime)
    async with app.router.lifespan_context(app):
        key, _ = await create_api_key(app.state.services.db, "test", clock.now())
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://facecast.test") as client:
            yield AppCtx(app, client, clock, key, settings)


@pytest.fixture(autouse=True)
def fresh_recording_runtime() -> None:
    RecordingRuntime.instances.clear()
    RecordingRuntime.start_gate = None
    RecordingRuntime.start_error = None


@pytest.fixture(autouse=True)
async def no_leaked_tasks() -> AsyncIterator[None]:
    """Every asyncio task a test starts must be finished (or cancelled and awaited) by its end."""
    before = set(asyncio.all_tasks())
    yield
    for _ in range(3):  # let tasks that are already done-but-not-collected settle
        await asyncio.sleep(0)
    leaked = [t for t in asyncio.all_tasks() - before
              if t is not asyncio.current_task() and not t.done()]
    if leaked:
        names = ", ".join(sorted(t.get_name() for t in leaked))
        for t in leaked:
            t.cancel()
        pytest.fail(f"leaked asyncio tasks: {names}")
