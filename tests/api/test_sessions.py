"""The REST API as a product backend uses it."""

from __future__ import annotations

import pytest

from facecast.sessions.state import EndReason
from tests.conftest import AppCtx, FakePeer

CARTESIA = {"type": "cartesia", "agent_id": "agent_1", "access_token": "secret-token-123"}


async def test_create_get_list_delete(ctx: AppCtx) -> None:
    created = await ctx.create_session(user_absent_timeout=30, max_duration=600)
    assert set(created) == {"session_id", "token"}
    sid = created["session_id"]

    r = await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    assert r.status_code == 200
    info = r.json()
    assert info["state"] == "created"
    assert info["avatar_id"] == "default"
    assert info["render_model"] == "default"
    assert info["background"] == "default"
    assert info["conversation_engine"] == {"type": "cartesia", "agent_id": "agent_1", "api": "line"}
    assert info["user_absent_timeout"] == 30 and info["max_duration"] == 600
    assert info["end_reason"] is None and info["billed_seconds"] == 0

    r = await ctx.client.get("/api/v1/sessions", params={"state": "created"}, headers=ctx.auth)
    assert [s["session_id"] for s in r.json()["sessions"]] == [sid]
    r = await ctx.client.get("/api/v1/sessions", params={"state": "ended"}, headers=ctx.auth)
    assert r.json()["sessions"] == []

    r = await ctx.client.delete(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    assert r.status_code == 200
    assert r.json()["state"] == "ended"
    assert r.json()["end_reason"] == "termination_command_received"

    # deleting again is a no-op that keeps the original end reason
    r = await ctx.client.delete(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    assert r.status_code == 200 and r.json()["end_reason"] == "termination_command_received"
    r = await ctx.client.get("/api/v1/sessions", params={"state": "ended"}, headers=ctx.auth)
    assert [s["session_id"] for s in r.json()["sessions"]] == [sid]


async def test_secrets_never_returned_or_stored(ctx: AppCtx, tmp_path) -> None:
    sid = (await ctx.create_session())["session_id"]
    r = await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    assert "secret-token-123" not in r.text
    r = await ctx.client.get("/api/v1/sessions", headers=ctx.auth)
    assert "secret-token-123" not in r.text
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("facecast.db*"))
    assert b"secret-token-123" not in db_bytes
    assert ctx.key.encode() not in db_bytes
    # nor echoed in a validation error
    bad = dict(CARTESIA, agent_id="")
    r = await ctx.client.post("/api/v1/sessions", json={"conversation_engine": bad}, headers=ctx.auth)
    assert r.status_code == 422 and "secret-token-123" not in r.text


async def test_render_model_alias_and_engines(ctx: AppCtx) -> None:
    sid = (await ctx.create_session(model="small", background="transparent"))["session_id"]
    info = (await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)).json()
    assert info["render_model"] == "small" and info["background"] == "transparent"
    ext = {"type": "external", "url": "ws://127.0.0.1:9/agent", "headers": {"X-Secret": "hdr-secret"},
           "audio": {"user": {"sample_rate": 16000}}}
    sid = (await ctx.create_session(conversation_engine=ext))["session_id"]
    info = (await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)).json()
    assert info["conversation_engine"]["type"] == "external"
    assert info["conversation_engine"]["audio"] == {"user": {"sample_rate": 16000}}
    assert "hdr-secret" not in str(info)


@pytest.mark.parametrize(("body", "status", "field"), [
    ({}, 422, "conversation_engine"),
    ({"conversation_engine": {"type": "cartesia", "agent_id": "a"}}, 422, "access_token"),
    ({"conversation_engine": {"type": "nope"}}, 422, "conversation_engine"),
    ({"conversation_engine": CARTESIA, "user_absent_timeout": 5}, 422, "user_absent_timeout"),
    ({"conversation_engine": CARTESIA, "max_duration": 59}, 422, "max_duration"),
    ({"conversation_engine": CARTESIA, "max_duration": 86401}, 422, "max_duration"),
    ({"conversation_engine": CARTESIA, "background": "green"}, 422, "background"),
    ({"conversation_engine": CARTESIA, "surprise": 1}, 422, "surprise"),
    ({"conversation_engine": dict(CARTESIA, api="grpc")}, 422, "api"),
    ({"conversation_engine": {"type": "external", "url": "http://x"}}, 422, "url"),
    ({"conversation_engine": {"type": "external", "url": "ws://x", "audio": {"user": {"sample_rate": 8000}}}},
     422, "sample_rate"),
    ({"conversation_engine": CARTESIA, "avatar_id": "av_missing"}, 400, "avatar_id"),
    ({"conversation_engine": CARTESIA, "render_model": "ultra"}, 400, "render_model"),
])
async def test_bad_create_requests_name_the_field(ctx: AppCtx, body, status, field) -> None:
    r = await ctx.client.post("/api/v1/sessions", json=body, headers=ctx.auth)
    assert r.status_code == status, r.text
    payload = r.json()
    locs = [str(part) for item in payload["detail"] for part in item["loc"]]
    assert field in locs, payload
    assert payload["code"]


async def test_malformed_json_and_oversized_bodies(ctx: AppCtx) -> None:
    r = await ctx.client.post("/api/v1/sessions", content=b"{not json",
                              headers={**ctx.auth, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["code"] == "invalid_payload"
    assert r.json()["detail"][0]["loc"][0] == "body"
    huge = b'{"conversation_engine": {"type": "cartesia", "agent_id": "a", "access_token": "' \
        + b"x" * 2_000_000 + b'"}}'
    r = await ctx.client.post("/api/v1/sessions", content=huge,
                              headers={**ctx.auth, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert ctx.manager.live_count == 0


async def test_auth(ctx: AppCtx) -> None:
    r = await ctx.client.get("/api/v1/sessions")
    assert r.status_code == 401 and r.json()["code"] == "unauthorized"
    assert r.json()["detail"][0]["loc"] == ["header", "Authorization"]
    r = await ctx.client.get("/api/v1/sessions", headers={"Authorization": "Bearer fc_unknown"})
    assert r.status_code == 401
    r = await ctx.client.post("/api/v1/sessions", json={"conversation_engine": CARTESIA})
    assert r.status_code == 401 and ctx.manager.live_count == 0


async def test_session_token_is_refused_by_rest_api(ctx: AppCtx) -> None:
    created = await ctx.create_session()
    token_auth = {"Authorization": f"Bearer {created['token']}"}
    for method, path in [("GET", "/api/v1/sessions"),
                         ("GET", f"/api/v1/sessions/{created['session_id']}"),
                         ("DELETE", f"/api/v1/sessions/{created['session_id']}"),
                         ("GET", "/api/v1/render-models")]:
        r = await ctx.client.request(method, path, headers=token_auth)
        assert r.status_code == 401, (method, path)
    # the token is what the SDK endpoints accept
    assert ctx.manager.verify_token(created["token"]) == created["session_id"]


async def test_unknown_session_is_404(ctx: AppCtx) -> None:
    for method in ("GET", "DELETE"):
        r = await ctx.client.request(method, "/api/v1/sessions/sess_nope", headers=ctx.auth)
        assert r.status_code == 404 and r.json()["code"] == "session_not_found"
        assert r.json()["detail"][0]["loc"] == ["path", "session_id"]
    r = await ctx.client.post("/api/v1/sessions/sess_nope/tasks", json={"text": "hi"}, headers=ctx.auth)
    assert r.status_code == 404


async def test_unknown_tts_voice_is_400_located_field_by_field(ctx: AppCtx) -> None:
    r = await ctx.client.post("/api/v1/sessions", headers=ctx.auth, json={
        "conversation_engine": {"type": "text-echo", "tts": {"voice": "no-such-voice"}}})
    assert r.status_code == 400 and r.json()["code"] == "unknown_voice"
    assert r.json()["detail"][0]["loc"] == ["body", "conversation_engine", "tts", "voice"]


async def test_optional_fields_sent_as_null_take_their_defaults(ctx: AppCtx) -> None:
    s = await ctx.create_session(avatar_id=None, background=None, render_model=None,
                                 user_absent_timeout=None, max_duration=None)
    info = (await ctx.client.get(f"/api/v1/sessions/{s['session_id']}", headers=ctx.auth)).json()
    assert (info["avatar_id"], info["background"], info["user_absent_timeout"],
            info["max_duration"]) == ("default", "default", 60, 3600)
    models = (await ctx.client.get("/api/v1/render-models", headers=ctx.auth)).json()
    assert info["render_model"] == next(m["name"] for m in models["render_models"] if m["default"])


async def test_concurrent_session_limit(ctx: AppCtx) -> None:
    ids = [(await ctx.create_session())["session_id"] for _ in range(3)]
    r = await ctx.client.post("/api/v1/sessions", json={"conversation_engine": CARTESIA}, headers=ctx.auth)
    assert r.status_code == 429 and r.json()["code"] == "limits_exceeded"
    await ctx.client.delete(f"/api/v1/sessions/{ids[0]}", headers=ctx.auth)
    await ctx.create_session()


async def test_tasks_recorded_for_cartesia(ctx: AppCtx) -> None:
    sid = (await ctx.create_session())["session_id"]
    r = await ctx.client.post(f"/api/v1/sessions/{sid}/tasks", json={"text": "hello there"},
                              headers=ctx.auth)
    assert r.status_code == 200
    task_id = r.json()["task_id"]
    info = (await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)).json()
    assert info["tasks"] == [{"task_id": task_id, "text": "hello there", "state": "recorded",
                              "created_at": info["tasks"][0]["created_at"],
                              "updated_at": info["tasks"][0]["updated_at"]}]
    for blank in ("", "  \n\t "):
        r = await ctx.client.post(f"/api/v1/sessions/{sid}/tasks", json={"text": blank},
                                  headers=ctx.auth)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "text"]
    # the task reaches the engine once a user has joined
    await ctx.manager.join(sid, FakePeer("p1"))
    await ctx.manager.settle()
    assert ctx.manager.live(sid).runtime.tasks == [(task_id, "hello there")]
    await ctx.client.delete(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    r = await ctx.client.post(f"/api/v1/sessions/{sid}/tasks", json={"text": "late"}, headers=ctx.auth)
    assert r.status_code == 409 and r.json()["code"] == "session_ended"


async def test_render_models_and_health(ctx: AppCtx) -> None:
    r = await ctx.client.get("/api/v1/render-models", headers=ctx.auth)
    names = {m["name"]: m for m in r.json()["render_models"]}
    assert names["default"]["width"] == 512 and names["default"]["default"] is True
    assert {"small", "large"} <= set(names)
    r = await ctx.client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
    r = await ctx.client.get("/openapi.json")
    assert "/api/v1/sessions" in r.json()["paths"]
    assert (await ctx.client.get("/docs")).status_code == 200


async def test_end_reason_visible_after_engine_end(ctx: AppCtx) -> None:
    sid = (await ctx.create_session())["session_id"]
    await ctx.manager.join(sid, FakePeer("p1"))
    ctx.manager.request_end(sid, EndReason.AGENT_LEFT)
    await ctx.manager.settle()
    info = (await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)).json()
    assert info["state"] == "ended" and info["end_reason"] == "agent_left"


async def test_metrics(ctx: AppCtx) -> None:
    sid = (await ctx.create_session())["session_id"]
    await ctx.client.delete(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    text = (await ctx.client.get("/metrics")).text
    assert "facecast_sessions_created_total 1" in text
    assert 'facecast_sessions_ended_total{reason="termination_command_received"} 1' in text
    assert "facecast_sessions_live 0" in text


async def test_external_header_values_validated_without_echo(ctx: AppCtx) -> None:
    ext = {"type": "external", "url": "ws://127.0.0.1:9/x", "headers": {"X-Key": "top\r\nsecret"}}
    r = await ctx.client.post("/api/v1/sessions", json={"conversation_engine": ext}, headers=ctx.auth)
    assert r.status_code == 422 and "headers" in str(r.json()["detail"][0]["loc"])
    assert "secret" not in r.text


async def test_oversized_chunked_body_is_413(ctx: AppCtx) -> None:
    """No Content-Length (chunked upload): still refused as too large, not as a parse error."""
    async def chunks():
        yield b'{"conversation_engine": {"type": "cartesia", "agent_id": "a", "access_token": "'
        for _ in range(40):
            yield b"x" * 50_000
        yield b'"}}'

    r = await ctx.client.post("/api/v1/sessions", content=chunks(),
                              headers={**ctx.auth, "Content-Type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"
    assert ctx.manager.live_count == 0


async def test_external_url_credentials_are_not_stored_or_returned(ctx: AppCtx, tmp_path) -> None:
    ext = {"type": "external", "url": "wss://user:pw-secret@engine.example:8443/ws?token=QUERY-SECRET"}
    sid = (await ctx.create_session(conversation_engine=ext))["session_id"]
    info = (await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)).json()
    assert info["conversation_engine"]["url"] == "wss://engine.example:8443/ws"
    listing = (await ctx.client.get("/api/v1/sessions", headers=ctx.auth)).text
    db_bytes = b"".join(p.read_bytes() for p in tmp_path.glob("facecast.db*"))
    for secret in ("pw-secret", "QUERY-SECRET"):
        assert secret not in str(info) and secret not in listing
        assert secret.encode() not in db_bytes
