"""End to end in a real browser: REST → SDK → WebRTC → stand-in Cartesia agent and back."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import cv2
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
    mute_and_settle,
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

    # video: 512×512 at about the frame rate (25 fps; a generous guard, bench/e2e.py measures)
    frames = await frames_until(page, lambda fs: fs[-1]["t"] - fs[0]["t"] > 2500)
    assert fps(frames, frames[-1]["t"] - 2000) >= 20.0
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
    await mute_and_settle(page, conn)
    mark = time.time() * 1000
    await conn.say(speechlike(12.0, rate))
    started = await wait_event(page, "avatar_started_speaking", 10, since=mark)
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
    if os.environ.get("FACECAST_E2E_DOC_IMAGES"):
        save_doc_image(await page.locator("main").screenshot(), "sdk-demo.png")

    # barge-in: unmute; the next spoken burst makes the agent send `clear`
    await page.evaluate("window.facecastDemo.avatar.toggleLocalAudio()")
    clear = await conn.wait_for("clear", timeout=8)
    cleared_ms = epoch(clear.time)
    # the segment playing at that moment ends interrupted (on a loaded machine the agent's
    # stream may have stalled long enough earlier to close one segment and open the next)
    ended = await wait_event(page, "avatar_ended_speaking", 3, since=started["t"],
                             where=lambda p: p["interrupted"])
    opened = [e["payload"]["segment_id"] for e in await events(page)
              if e["type"] == "avatar_started_speaking" and e["t"] >= started["t"]]
    assert ended["payload"]["segment_id"] == opened[-1], (ended, opened)
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
    # the server's own words, not "[object Object]"
    assert "token" in result["message"] and "object" not in result["message"], result
    assert errs[0]["payload"]["message"] == result["message"]


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
    await mute_and_settle(pa, ca)   # no barge-in on A
    mark = time.time() * 1000
    await ca.say(speechlike(2.0, ca.sample_rate))
    await wait_event(pa, "avatar_started_speaking", 10, since=mark)
    await asyncio.sleep(1.5)
    _, audio_b = await probe(pb)
    assert all(r < 0.01 for _, r in rms_after(audio_b, mark))
    assert not [e for e in await events(pb) if e["type"] == "avatar_started_speaking"]
    # B's video keeps playing (a liveness guard; frame-rate figures are bench/e2e.py's job)
    frames_b, _ = await probe(pb)
    assert fps(frames_b, frames_b[-1]["t"] - 2000) >= 10
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


PAGE_COLOUR = (106, 61, 240)     # the host page's own background behind a transparent avatar
NO_WEBGL_JS = """(() => {
  const orig = HTMLCanvasElement.prototype.getContext;
  HTMLCanvasElement.prototype.getContext = function (type, opts) {
    return type === "webgl" || type === "webgl2" || type === "experimental-webgl"
      ? null : orig.call(this, type, opts);
  };
})();"""
READ_MATTE_JS = """(points) => {
  const a = window.facecastDemo.avatar;
  const c = a.element.querySelector("canvas[data-facecast]");
  const tmp = document.createElement("canvas");
  tmp.width = c.width; tmp.height = c.height;
  const t = tmp.getContext("2d", { willReadFrequently: true });
  t.drawImage(c, 0, 0);
  const patch = ([x, y]) => {
    const d = t.getImageData(x - 2, y - 2, 5, 5).data;
    const m = [0, 0, 0, 0];
    for (let i = 0; i < d.length; i++) m[i % 4] += d[i] / 25;
    return m;
  };
  return { mode: a._compositor.gl ? "webgl" : "2d", width: c.width, height: c.height,
           frames: a._compositor.frames, videoHeight: a.video.videoHeight,
           pixels: points.map(patch) };
}"""


def save_doc_image(png: bytes, name: str) -> None:
    """With FACECAST_E2E_DOC_IMAGES=DIR (e.g. docs/img), keep a screenshot for the docs."""
    out = os.environ.get("FACECAST_E2E_DOC_IMAGES")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / name).write_bytes(png)


@pytest.mark.parametrize("compositor", ["webgl", "2d"])
async def test_transparent_background_composites_over_the_page(e2e_server, agent, new_page,
                                                                compositor) -> None:
    """A `"background": "transparent"` session: the SDK turns the stacked matte into a canvas
    whose background is see-through (the page shows) and whose face is opaque."""
    s = await create_session(e2e_server, background="transparent")
    page = await new_page()
    if compositor == "2d":
        await page.add_init_script(NO_WEBGL_JS)
    assert (await join(page, e2e_server.base_url, s["token"]))["ok"]
    await agent.next_connection(10)
    await page.evaluate("""(rgb) => {
        for (const el of [document.body, document.getElementById("avatar")])
          el.style.background = `rgb(${rgb})`;
        document.querySelector("main").style.background = "transparent";
    }""", list(PAGE_COLOUR))
    await page.wait_for_function("window.facecastDemo.avatar._compositor"
                                 " && window.facecastDemo.avatar._compositor.frames > 10")
    corners = [(12, 12), (499, 12), (12, 499), (499, 499)]
    face = (256, 265)                          # between the eyes and the nose tip, at 512 px
    m = await page.evaluate(READ_MATTE_JS, [list(p) for p in [*corners, face]])
    assert m["mode"] == compositor
    assert (m["width"], m["height"], m["videoHeight"]) == (512, 512, 1024), m
    *corner_px, face_px = m["pixels"]
    assert all(px[3] < 8 for px in corner_px), m      # background: transparent
    assert face_px[3] > 247, m                          # face: opaque ...
    assert face_px[0] > face_px[2] + 30, m             # ... and skin-coloured (red over blue)

    # what the user sees: the page's colour around the face, the face itself opaque
    el = page.locator("#avatar")
    png = await el.screenshot()
    img = cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    h, w = img.shape[:2]
    scale = w / 512
    for x, y in [(24, 24), (488, 24), (24, 488), (488, 488)]:   # inside the rounded corners
        seen = img[round(y * scale), round(x * scale)].astype(int)
        assert np.abs(seen - PAGE_COLOUR).max() < 12, (x, y, seen)
    seen = img[round(face[1] * scale), round(face[0] * scale)].astype(int)
    assert np.abs(seen - PAGE_COLOUR).max() > 100, seen
    assert np.abs(seen - np.array(face_px[:3])).max() < 16, (seen, face_px)
    if compositor == "webgl":
        save_doc_image(png, "sdk-transparent.png")
    async with httpx.AsyncClient() as http:
        await http.delete(f"{e2e_server.base_url}/api/v1/sessions/{s['session_id']}",
                          headers=e2e_server.auth)
