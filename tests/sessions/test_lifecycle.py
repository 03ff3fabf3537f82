"""Session lifecycle on virtual time: timers, joins, ends exactly once, restart recovery."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from facecast.api.app import create_app
from facecast.clock import VirtualClock
from facecast.errors import InvalidSessionState, Unauthorized
from facecast.sessions.keys import create_api_key
from facecast.sessions.state import EndReason
from facecast.sessions.tokens import TokenSigner
from tests.conftest import AppCtx, FakePeer, RecordingRuntime, make_settings


async def state_of(ctx: AppCtx, sid: str) -> dict:
    r = await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    return r.json()


async def test_user_absent_timeout_from_creation(ctx: AppCtx) -> None:
    sid = (await ctx.create_session(user_absent_timeout=20))["session_id"]
    ctx.clock.advance(19.9)
    await ctx.manager.settle()
    assert (await state_of(ctx, sid))["state"] == "created"
    ctx.clock.advance(0.2)
    await ctx.manager.settle()
    info = await state_of(ctx, sid)
    assert info["state"] == "ended" and info["end_reason"] == "user_absent_timeout"
    assert info["billed_seconds"] == 0 and info["started_at"] is None


async def test_join_cancels_absent_timer_and_last_leave_restarts_it(ctx: AppCtx) -> None:
    sid = (await ctx.create_session(user_absent_timeout=20))["session_id"]
    ctx.clock.advance(10)
    a, b = FakePeer("a"), FakePeer("b")
    await ctx.manager.join(sid, a)
    await ctx.manager.settle()
    info = await state_of(ctx, sid)
    assert info["state"] == "active" and info["started_at"] is not None
    assert info["users_connected"] == 1
    ctx.clock.advance(100)  # nobody absent: no timeout
    await ctx.manager.join(sid, b)
    await ctx.manager.leave(sid, a)
    ctx.clock.advance(100)  # b still here
    await ctx.manager.settle()
    assert (await state_of(ctx, sid))["state"] == "active"
    await ctx.manager.leave(sid, b)
    ctx.clock.advance(19)
    await ctx.manager.settle()
    assert (await state_of(ctx, sid))["state"] == "active"
    await ctx.manager.join(sid, FakePeer("c"))  # a rejoin within the window cancels it
    await ctx.manager.leave(sid, FakePeer("c"))
    ctx.clock.advance(19)
    await ctx.manager.settle()
    assert (await state_of(ctx, sid))["state"] == "active"
    ctx.clock.advance(1.5)
    await ctx.manager.settle()
    info = await state_of(ctx, sid)
    assert info["end_reason"] == "user_absent_timeout"
    assert info["billed_seconds"] == 240  # from first join (t=10) to the end (t=250)
    runtime = RecordingRuntime.instances[0]
    assert runtime.calls[:2] == [("attach", "a"), ("start", None)]
    assert runtime.stopped == (EndReason.USER_ABSENT_TIMEOUT, None, None)


async def test_max_duration(ctx: AppCtx) -> None:
    sid = (await ctx.create_session(max_duration=120, user_absent_timeout=600))["session_id"]
    await ctx.manager.join(sid, FakePeer("a"))
    ctx.clock.advance(119)
    await ctx.manager.settle()
    assert (await state_of(ctx, sid))["state"] == "active"
    ctx.clock.advance(1)
    await ctx.manager.settle()
    info = await state_of(ctx, sid)
    assert info["end_reason"] == "max_duration_reached" and info["billed_seconds"] == 120


async def test_ends_exactly_once_whatever_races(ctx: AppCtx) -> None:
    sid = (await ctx.create_session(user_absent_timeout=10, max_duration=60))["session_id"]
    await ctx.manager.join(sid, FakePeer("a"))
    await ctx.manager.leave(sid, FakePeer("a"))
    # every cause at once: DELETE, engine end, both timers, shutdown
    results = await asyncio.gather(
        ctx.manager.end(sid, EndReason.TERMINATION_COMMAND_RECEIVED),
        ctx.manager.end(sid, EndReason.AGENT_LEFT),
        ctx.manager.end(sid, EndReason.ENGINE_ERROR, error_code="engine_error", message="x"),
    )
    ctx.clock.advance(100)
    ctx.manager.request_end(sid, EndReason.AGENT_LEFT)
    await ctx.manager.settle()
    assert results == [True, False, False]
    assert (await state_of(ctx, sid))["end_reason"] == "termination_command_received"
    assert RecordingRuntime.instances[0].stopped[0] == EndReason.TERMINATION_COMMAND_RECEIVED
    assert ctx.clock.pending == 0


async def test_tokens(ctx: AppCtx) -> None:
    created = await ctx.create_session()
    sid, token = created["session_id"], created["token"]
    assert ctx.manager.verify_token(token) == sid
    forged = TokenSigner("another-server-secret-" * 3, 600).issue(sid, ctx.clock.now())
    for bad in ("", "garbage", token[:-2] + "xx", forged):
        with pytest.raises(Unauthorized) as err:
            ctx.manager.verify_token(bad)
        assert err.value.code == "invalid_token"
    ctx.clock.advance(ctx.settings.token_ttl + 1)
    with pytest.raises(Unauthorized) as err:
        ctx.manager.verify_token(token)
    assert err.value.code == "token_expired"


async def test_token_rejoin_after_expiry_while_live(ctx: AppCtx) -> None:
    created = await ctx.create_session(user_absent_timeout=3000, max_duration=7200)
    sid, token = created["session_id"], created["token"]
    assert ctx.manager.verify_token(token) == sid
    await ctx.manager.join(sid, FakePeer("a"))
    ctx.clock.advance(ctx.settings.token_ttl + 100)
    assert ctx.manager.verify_token(token) == sid  # rejoin after a network drop
    await ctx.client.delete(f"/api/v1/sessions/{sid}", headers=ctx.auth)
    with pytest.raises(InvalidSessionState) as err:
        ctx.manager.verify_token(token)
    assert err.value.code == "session_ended"


async def test_shutdown_ends_live_sessions(tmp_path) -> None:
    settings = make_settings(tmp_path)
    clock = VirtualClock()
    app = create_app(settings, clock=clock, runtime_factory=RecordingRuntime)
    async with app.router.lifespan_context(app):
        key, _ = await create_api_key(app.state.services.db, "t", clock.now())
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.post("/api/v1/sessions", headers={"Authorization": f"Bearer {key}"},
                             json={"conversation_engine": {"type": "cartesia", "agent_id": "a",
                                                           "access_token": "t"}})
            sid = r.json()["session_id"]
    app = create_app(settings, clock=clock, runtime_factory=RecordingRuntime)
    async with app.router.lifespan_context(app):
        row, _ = await app.state.manager.get_row(sid)
        assert row.state == "ended" and row.end_reason == "server_shutdown"


async def test_restart_recovers_sessions_left_active_by_a_crash(tmp_path) -> None:
    settings = make_settings(tmp_path)
    clock = VirtualClock()
    app = create_app(settings, clock=clock, runtime_factory=RecordingRuntime)
    async with app.router.lifespan_context(app):
        key, _ = await create_api_key(app.state.services.db, "t", clock.now())
        manager = app.state.manager
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            auth = {"Authorization": f"Bearer {key}"}
            body = {"conversation_engine": {"type": "cartesia", "agent_id": "a", "access_token": "t"}}
            active = (await c.post("/api/v1/sessions", headers=auth, json=body)).json()["session_id"]
            ended = (await c.post("/api/v1/sessions", headers=auth, json=body)).json()["session_id"]
            await manager.join(active, FakePeer("a"))
            await c.delete(f"/api/v1/sessions/{ended}", headers=auth)
        # simulate a crash: the process dies without ending its sessions
        manager._live.clear()
        manager.shutdown = _noop  # type: ignore[method-assign]

    clock.advance(30)
    app2 = create_app(settings, clock=clock, runtime_factory=RecordingRuntime)
    async with app2.router.lifespan_context(app2):
        m2 = app2.state.manager
        row, _ = await m2.get_row(active)
        assert row.state == "ended" and row.end_reason == "server_shutdown"
        assert row.ended_at == clock.now()
        row, _ = await m2.get_row(ended)
        assert row.end_reason == "termination_command_received"  # untouched
        assert row.ended_at == clock.now() - timedelta(seconds=30)


async def _noop() -> None:
    return None


async def test_tasks_keep_submission_order_across_runtime_start(ctx: AppCtx) -> None:
    sid = (await ctx.create_session(conversation_engine={"type": "text-echo"}))["session_id"]
    post = lambda text: ctx.client.post(f"/api/v1/sessions/{sid}/tasks", json={"text": text},  # noqa: E731
                                        headers=ctx.auth)
    await post("one")
    RecordingRuntime.start_gate = asyncio.Event()
    await ctx.manager.join(sid, FakePeer("a"))
    await asyncio.sleep(0)           # the runtime is starting (engine connecting)
    await post("two")
    RecordingRuntime.start_gate.set()
    await ctx.manager.settle()
    await post("three")
    runtime = RecordingRuntime.instances[0]
    assert [text for _, text in runtime.tasks] == ["one", "two", "three"]
    info = await state_of(ctx, sid)
    assert [t["state"] for t in info["tasks"]] == ["queued"] * 3


async def test_a_runtime_that_fails_to_start_ends_the_session(ctx: AppCtx) -> None:
    sid = (await ctx.create_session())["session_id"]
    RecordingRuntime.start_error = RuntimeError("boom")
    peer = FakePeer("a")
    await ctx.manager.join(sid, peer)
    await ctx.manager.settle()
    info = await state_of(ctx, sid)
    assert info["state"] == "ended" and info["end_reason"] == "engine_error"
    assert RecordingRuntime.instances[0].stopped[1] == "internal_error"


async def test_an_end_the_database_refuses_is_retried_and_shown_meanwhile(ctx: AppCtx) -> None:
    """The session ends at once (runtime stopped, reads show the end); the row is written once
    the database takes it again, with the original reason and times."""
    from sqlalchemy import event, select
    from sqlalchemy.exc import OperationalError

    from facecast.sessions.db import SessionRow

    sid = (await ctx.create_session(user_absent_timeout=600))["session_id"]
    await ctx.manager.join(sid, FakePeer("a"))
    ctx.clock.advance(42)
    failures = {"left": 2}

    def refuse_session_updates(conn, cursor, statement, params, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE SESSIONS") and failures["left"] > 0:
            failures["left"] -= 1
            raise OperationalError(statement, params, Exception("database is locked"))

    engine = ctx.manager.db.engine.sync_engine
    event.listen(engine, "before_cursor_execute", refuse_session_updates)
    try:
        r = await ctx.client.delete(f"/api/v1/sessions/{sid}", headers=ctx.auth)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == "ended"
        assert r.json()["end_reason"] == "termination_command_received"
        assert RecordingRuntime.instances[0].stopped is not None
        listed = (await ctx.client.get("/api/v1/sessions", headers=ctx.auth)).json()
        assert [(s["session_id"], s["state"]) for s in listed["sessions"]] == [(sid, "ended")]
        active = (await ctx.client.get("/api/v1/sessions?state=active", headers=ctx.auth)).json()
        assert active["sessions"] == []

        async def stored() -> SessionRow:
            async with ctx.manager.db.session() as s:
                return (await s.execute(select(SessionRow).where(SessionRow.id == sid))).scalar_one()

        assert (await stored()).state == "active"       # not written yet
        ctx.clock.advance(1.0)                          # first retry: refused again
        await ctx.manager.settle()
        assert failures["left"] == 0 and (await stored()).state == "active"
        ctx.clock.advance(2.0)                          # second retry: written
        await ctx.manager.settle()
        row = await stored()
        assert (row.state, row.end_reason, row.billed_seconds) == (
            "ended", "termination_command_received", 42)
        assert row.ended_at == ctx.clock.now() - timedelta(seconds=3)
    finally:
        event.remove(engine, "before_cursor_execute", refuse_session_updates)
