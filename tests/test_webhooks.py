"""Session lifecycle webhooks delivered to a local HTTP receiver, signed, with retries."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from facecast.api.app import create_app
from facecast.clock import VirtualClock
from facecast.sessions.keys import create_api_key
from facecast.webhooks import WebhookSender
from tests.conftest import FakePeer, RecordingRuntime, make_settings


class Receiver:
    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.fail_first = fail_first
        self.got = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail_first > 0:
                    outer.fail_first -= 1
                    self.send_response(503)
                else:
                    outer.received.append((dict(self.headers), body))
                    outer.got.set()
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [json.loads(body) for _, body in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


async def test_session_events_are_posted_and_signed(tmp_path: Path, receiver: Receiver) -> None:
    settings = make_settings(tmp_path, webhook_url=receiver.url, webhook_secret="s3cr3t")
    clock = VirtualClock()
    app = create_app(settings, clock=clock, runtime_factory=RecordingRuntime)
    async with app.router.lifespan_context(app):
        key, _ = await create_api_key(app.state.services.db, "t", clock.now())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.post("/api/v1/sessions", headers={"Authorization": f"Bearer {key}"},
                             json={"conversation_engine": {"type": "cartesia", "agent_id": "a",
                                                           "access_token": "t"}})
            sid = r.json()["session_id"]
            manager = app.state.manager
            await manager.join(sid, FakePeer("p"))
            clock.advance(42.5)
            await c.delete(f"/api/v1/sessions/{sid}", headers={"Authorization": f"Bearer {key}"})
    events = receiver.events()
    assert [e["type"] for e in events] == ["session.started", "session.ended"]
    ended = events[1]
    assert ended["session_id"] == sid and ended["end_reason"] == "termination_command_received"
    assert ended["billed_seconds"] == 43 and ended["engine_type"] == "cartesia"
    headers, body = receiver.received[1]
    expected = "sha256=" + hmac.new(b"s3cr3t", body, hashlib.sha256).hexdigest()
    assert headers["X-Facecast-Signature"] == expected
    assert "access_token" not in body.decode() and '"t"' not in body.decode()


async def test_retries_until_the_receiver_answers() -> None:
    receiver = Receiver(fail_first=2)
    try:
        sender = WebhookSender(receiver.url, retry_delays=(0.01, 0.01, 0.01))
        sender.start()
        sender.enqueue({"type": "session.ended", "session_id": "sess_x"})
        await sender.aclose(timeout=5)
        assert sender.delivered == 1 and sender.failed == 0
        assert receiver.events() == [{"type": "session.ended", "session_id": "sess_x"}]
    finally:
        receiver.server.shutdown()


async def test_gives_up_after_the_last_try() -> None:
    sender = WebhookSender("http://127.0.0.1:9/nothing", retry_delays=(0.01,), timeout=1)
    sender.start()
    sender.enqueue({"type": "session.ended", "session_id": "sess_y"})
    await sender.aclose(timeout=5)
    assert sender.delivered == 0 and sender.failed == 1
