"""End to end in a real browser: REST → SDK → WebRTC → stand-in Cartesia agent and back."""

from __future__ import annotations

import asyncio
import time

import httpx
import numpy as np
import pytest
from browser import (
    avatar_regions,
    best_correlation,
    envelope,
    epoch,
    events,
    fps,
    join,
    probe,
    wait_event,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session")]


def speechlike(seconds: float, rate: int) -> np.ndarray:
    """A loud 4 Hz-modulated tone: clearly audible, and it moves the mouth."""
    t = np.arange(int(seconds * rate)) / rate
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 4 * t)
    return (14000 * env * np.sin(2 * np.pi * 180 * t)).astype(np.int16)


async def create_session(server, **body) -> dict:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{server.base_url}/api/v1/sessions", headers=server.auth, json={
            "conversation_engine": {"type": "cartesia", "agent_id": "demo", "access_token": "demo"},
            **body})
    assert r.status_code == 200, r.text
    return r.json()


async def session_row(server, sid: str) -> dict:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{server.base_url}/api/v1/sessions/{sid}", headers=server.auth)
    return r.json()


def rms_after(audio: list[dict], since_ms: float) -> list[tuple[float, float]]:
    return [(a["t"], a["rms"]) for a in audio if a["t"] >= since_ms]


async def frames_until(page, cond, timeout: float = 10.0) -> list[dict]:
    """Poll the probe's frames until `cond(frames)` holds; returns them."""
    deadline = time.monotonic() + timeout
    while True:
        frames, _ = await probe(page)
        if frames and cond(frames):
            return frames
        if time.monotonic() > deadline:
            raise TimeoutError("the video probe never saw the expected frames")
        await asyncio.sleep(0.1)


def window(frames: list[dict], start_ms: float, end_ms: float, key: str) -> np.ndarray:
    return np.array([f[key] for f in frames if start_ms <= f["t"] < end_ms and key in f])


async def test_conversation_through_the_demo_page(e2e_server, agent, new_page, mic_wav) -> None:
    """The demo page with the real renderer (the built-in avatar, 512×512): mic to the agent,
    agent speech to the page with a moving mouth, barge-in, DELETE."""
    page = await new_page()
    await page.goto(f"{e2e_server.base_url}/demo?autostart=1")
    await wait_event(page, "ready", 20)
    await page.evaluate("r => window.__probe.setRegions(r)", avatar_regions(512))
    sid = await page.evaluate("window.facecastDemo.sessionId")
    conn = await agent.next_connection(10)
    await conn.wait_started()

    # video: >= 24 fps decoded at the browser, 512×512
    frames = await frames_until(page, lambda fs: fs[-1]["t"] - fs[0]["t"] > 2500)
    assert fps(frames, frames[-1]["t"] - 2000) >= 24.0
    assert (frames[-1]["w"], frames[-1]["h"]) == (512, 512)
    # the silent avatar's picture, to measure the mouth against
    await page.evaluate("window.__probe.takeReference()")

    # mic: the agent hears the WAV (envelope correlation over the last 6 s)
    rate = conn.sample_rate
    ref = envelope(mic_wav[1], 48_000)
    corr, deadline = 0.0, time.monotonic() + 15
    while corr <= 0.8 and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        got = conn.received_pcm()
        if got.size >= 6 * rate:
            corr = best_correlation(envelope(got[-int(6 * rate):], rate), ref)
    assert corr > 0.8, (corr, got.size / rate, float(np.abs(got).max()) if got.size else 0)

    # agent speech: heard at the browser, the mouth moves; mute the mic so no barge-in yet
    assert await page.evaluate("window.facecastDemo.avatar.toggleLocalAudio()") is False
    await asyncio.sleep(1.0)   # mic audio already on its way settles at the agent
    mark = time.time() * 1000
    await conn.say(speechlike(12.0, rate))
    started = await wait_event(page, "avatar_started_speaking", 5, since=mark)
    speaking_from = started["t"] + 300          # network + jitter buffer
    frames = await frames_until(page, lambda fs: fs[-1]["t"] > speaking_from + 1200)
    _, audio = await probe(page)
    loud = [r for t, r in rms_after(audio, started["t"]) if r > 0.05]
    assert len(loud) > 50, "agent speech not heard at the browser"
    ref_t = await page.evaluate("window.__probe.referenceT")
    silent_mouth = window(frames, ref_t, mark, "mouthDiff")
    silent_face = window(frames, ref_t, mark, "faceDiff")
    mouth = window(frames, speaking_from, float("inf"), "mouthDiff")
    face = window(frames, speaking_from, float("inf"), "faceDiff")
    assert silent_mouth.size > 50 and mouth.size > 20, (silent_mouth.size, mouth.size)
    figures = {"silent mouth p90": float(np.percentile(silent_mouth, 90)),
               "silent face max": float(silent_face.max()),
               "speaking mouth p50": float(np.median(mouth)),
               "speaking face p50": float(np.median(face))}
    # the mouth region changes clearly more while the agent speaks than during silence ...
    # (mouthDiff discounts head sway: see probe.js; silence stays ~1-4, an open mouth ~9-14)
    assert figures["speaking mouth p50"] > max(5.0, 2.0 * figures["silent mouth p90"]), figures
    # ... and the rest of the face (cheeks, nose) barely changes, speaking or not
    assert figures["speaking face p50"] < 0.5 * figures["speaking mouth p50"], figures
    assert figures["silent face max"] < 8.0, figures

    # barge-in: unmute; the next spoken burst makes the agent send `clear`
    await page.evaluate("window.facecastDemo.avatar.toggleLocalAudio()")
    clear = await conn.wait_for("clear", timeout=8)
    cleared_ms = epoch(clear.time)
    ended = await wait_event(page, "avatar_ended_speaking", 3, since=started["t"])
    assert ended["payload"]["interrupted"] is True
    assert ended["payload"]["segment_id"] == started["payload"]["segment_id"]
    await asyncio.sleep(0.5)
    _, audio = await probe(page)
    after = rms_after(audio, cleared_ms)
    silent = next(t for t, r in after if r < 0.01)
    assert silent - cleared_ms < 1000, silent - cleared_ms  # behaviour; bench/e2e.py has the figure
    assert all(r < 0.02 for t, r in after if t > cleared_ms + 300)

    # speaking events arrive in order, each segment started before it ended
    seen: dict[str, str] = {}
    for e in await events(page):
        if e["type"] in ("avatar_started_speaking", "avatar_ended_speaking"):
            seg = e["payload"]["segment_id"]
            if e["type"] == "avatar_started_speaking":
                assert seg not in seen
                seen[seg] = "started"
            else:
                assert seen.get(seg) == "started"
                seen[seg] = "ended"

    # DELETE ends the session; the page is told why
    mark = time.time() * 1000
    async with httpx.AsyncClient() as http:
        r = await http.delete(f"{e2e_server.base_url}/api/v1/sessions/{sid}", headers=e2e_server.auth)
    assert r.status_code in (200, 204)
    ended = await wait_event(page, "session_ended", 5, since=mark)
    assert ended["payload"]["reason"] == "termination_command_received"


async def test_bad_token_is_refused(e2e_server, new_page) -> None:
    page = await new_page()
    result = await join(page, e2e_server.base_url, "not-a-token")
    assert result["ok"] is False and result["code"] == "invalid_token"
    errs = [e for e in await events(page) if e["type"] == "error"]
    assert errs and errs[0]["payload"]["type"] == "error"


async def test_closing_the_page_starts_the_absent_timer(e2e_server, agent, new_page) -> None:
    s = await create_session(e2e_server, user_absent_timeout=10)
    page = await new_page()
    assert (await join(page, e2e_server.base_url, s["token"]))["ok"]
    await agent.next_connection(10)
    await asyncio.sleep(1.0)
    await page.close()
    t_closed = time.monotonic()
    row = {}
    while time.monotonic() - t_closed < 20:
        row = await session_row(e2e_server, s["session_id"])
        if row.get("state") == "ended":
            break
        await asyncio.sleep(0.5)
    assert row.get("end_reason") == "user_absent_timeout", row
    assert time.monotonic() - t_closed >= 9.0


async def test_two_sessions_stay_independent(e2e_server, agent, new_page) -> None:
    a, b = await create_session(e2e_server), await create_session(e2e_server)
    pa, pb = await new_page(), await new_page()
    assert (await join(pa, e2e_server.base_url, a["token"]))["ok"]
    ca = await agent.next_connection(10)
    assert (await join(pb, e2e_server.base_url, b["token"]))["ok"]
    await agent.next_connection(10)
    await pa.evaluate("window.facecastDemo.avatar.toggleLocalAudio()")   # no barge-in on A
    mark = time.time() * 1000
    await ca.say(speechlike(2.0, ca.sample_rate))
    await wait_event(pa, "avatar_started_speaking", 5, since=mark)
    await asyncio.sleep(1.5)
    _, audio_b = await probe(pb)
    assert all(r < 0.01 for _, r in rms_after(audio_b, mark))
    assert not [e for e in await events(pb) if e["type"] == "avatar_started_speaking"]
    frames_b, _ = await probe(pb)
    assert fps(frames_b, frames_b[-1]["t"] - 1000) >= 20
    for s in (a, b):
        async with httpx.AsyncClient() as http:
            await http.delete(f"{e2e_server.base_url}/api/v1/sessions/{s['session_id']}",
                              headers=e2e_server.auth)


async def test_page_task_is_spoken_on_text_echo(e2e_server, new_page) -> None:
    """`FacecastAvatar.task(text)` on a text-echo session: spoken, heard, reported."""
    s = await create_session(e2e_server, conversation_engine={"type": "text-echo",
                                                              "tts": {"voice": "en-us"}})
    page = await new_page()
    assert (await join(page, e2e_server.base_url, s["token"]))["ok"]
    mark = time.time() * 1000
    created = await page.evaluate("window.facecastDemo.avatar.task('Hello from the page')")
    task_id = created["task_id"]
    started = await wait_event(page, "avatar_started_speaking", 10, since=mark)
    ended = await wait_event(page, "avatar_ended_speaking", 15, since=started["t"])
    assert ended["payload"]["segment_id"] == started["payload"]["segment_id"]
    assert ended["payload"]["interrupted"] is False
    await wait_event(page, "task_state", 5, where=lambda p: p == {"task_id": task_id, "state": "done"})
    states = [e["payload"] for e in await events(page) if e["type"] == "task_state"]
    assert [p["state"] for p in states if p["task_id"] == task_id] == ["queued", "speaking", "done"]
    _, audio = await probe(page)
    loud = [r for t, r in rms_after(audio, started["t"]) if t < ended["t"] and r > 0.02]
    assert len(loud) > 20, "the task's speech was not heard at the browser"

    # a refused task rejects the promise with a typed error; no `error` event, the session goes on
    err = await page.evaluate("""window.facecastDemo.avatar.task('   ').then(
        () => null, (e) => ({ type: e.type, code: e.code, request_id: e.request_id,
                              session_id: e.session_id }))""")
    assert err is not None and err["type"] == "error" and err["code"] == "invalid_request"
    assert err["request_id"] and err["session_id"] == s["session_id"]
    assert not [e for e in await events(page) if e["type"] in ("error", "session_ended")]
    async with httpx.AsyncClient() as http:
        info = (await http.get(f"{e2e_server.base_url}/api/v1/sessions/{s['session_id']}",
                               headers=e2e_server.auth)).json()
        assert [(t["task_id"], t["state"]) for t in info["tasks"]] == [(task_id, "done")]
        await http.delete(f"{e2e_server.base_url}/api/v1/sessions/{s['session_id']}",
                          headers=e2e_server.auth)
