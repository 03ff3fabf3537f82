"""Page-side helpers shared by the browser tests and bench/e2e.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np

EVENT_TYPES = ["avatar_started_speaking", "avatar_ended_speaking", "local_mic_state_change",
               "connection_state_change", "error", "session_ended", "idle", "message", "task_state"]

JOIN_JS = """async ([token, background]) => {
  const { FacecastAvatar } = await import("/sdk/facecast.js");
  const el = document.getElementById("avatar");
  const a = new FacecastAvatar(el, { sessionToken: token, apiHost: location.origin });
  window.facecastDemo.avatar = a;
  const events = (window.facecastDemo.events = []);
  for (const type of EVENT_TYPES_JSON) a.on(type, (payload) => events.push({ type, payload,
      t: performance.timeOrigin + performance.now() }));
  const t0 = performance.timeOrigin + performance.now();
  try { await a.init(); } catch (e) { return { ok: false, code: e.code, message: e.message }; }
  events.push({ type: "ready", payload: {}, t: performance.timeOrigin + performance.now() });
  const placeholder = document.getElementById("placeholder");   // as the demo's own start() does
  if (placeholder) placeholder.remove();
  return { ok: true, t0 };
}""".replace("EVENT_TYPES_JSON", json.dumps(EVENT_TYPES))


async def join(page: Any, base_url: str, token: str) -> dict[str, Any]:
    """Open the demo page (for the SDK's origin) and join with `token` through the SDK."""
    await page.goto(f"{base_url}/demo")
    await page.wait_for_function("window.facecastDemo !== undefined")
    return dict(await page.evaluate(JOIN_JS, [token, "default"]))


async def events(page: Any) -> list[dict[str, Any]]:
    return list(await page.evaluate("window.facecastDemo.events"))


async def wait_event(page: Any, kind: str, timeout: float = 10.0, since: float = 0.0,
                     where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """The first `kind` event at or after `since` (epoch ms) whose payload satisfies `where`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in await events(page):
            if e["type"] == kind and e["t"] >= since and (where is None or where(e["payload"])):
                return e
        await asyncio.sleep(0.05)
    raise TimeoutError(f"no {kind} event in {timeout} s")


async def mute_and_settle(page: Any, conn: Any, timeout: float = 15.0) -> None:
    """Mute the page's mic, then wait until the agent `conn` hears silence: no user turn open and
    the last 0.4 s it received quiet. Mic audio already in flight when the mic was muted could
    otherwise open a user turn (a barge-in) just as the test makes the agent speak."""
    rate = conn.sample_rate
    at_mute = conn.received_pcm().size
    assert await page.evaluate("window.facecastDemo.avatar.toggleLocalAudio()") is False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # judge only audio the agent received well after the mute: what was captured just
        # before it may still be on its way (browser, jitter buffer, engine)
        after = conn.received_pcm()[at_mute:]
        tail = after[-int(0.4 * rate):]
        if (after.size >= 0.7 * rate and not conn.user_speaking
                and np.abs(tail.astype(np.int32)).max() < 300):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the agent still hears the mic {timeout} s after muting it")


async def probe(page: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = await page.evaluate("({frames: window.__probe.frames, audio: window.__probe.audio})")
    return data["frames"], data["audio"]


def avatar_regions(size: int = 512) -> dict[str, Any]:
    """Boxes `[x, y, w, h]` on the built-in avatar's `size`-px frame, from its face geometry:
    `mouth` (lips plus the jaw's travel) and `face`: both cheeks and the nose bridge, skin that
    only idle head motion moves. Eyes (blinks) and outlines are left out."""
    from facecast.render import builtin_avatar

    avatar = builtin_avatar()
    g = avatar.geometry.transformed(size / avatar.size)
    lips = np.concatenate([g["lip_outer_upper"], g["lip_outer_lower"]])
    (x0, y0), (x1, y1) = lips.min(0), lips.max(0)
    w = x1 - x0
    mouth = [x0 - 0.2 * w, y0 - 0.15 * w, 1.4 * w, (y1 - y0) + 0.6 * w]
    nose = g["nose_tip"][0]
    face = [[e[0] - 0.3 * w, e[1] + 0.4 * w, 0.6 * w, (nose[1] - e[1]) - 0.4 * w]
            for e in (g.eye_center("r"), g.eye_center("l"))]
    face.append([nose[0] - 0.25 * w, g.eye_center("r")[1] - 0.1 * w, 0.5 * w, 0.5 * w])
    return {"mouth": [round(float(v)) for v in mouth],
            "face": [[round(float(v)) for v in box] for box in face]}


def fps(frames: list[dict[str, Any]], since_ms: float) -> float:
    ts = [f["t"] for f in frames if f["t"] >= since_ms]
    return (len(ts) - 1) / ((ts[-1] - ts[0]) / 1000) if len(ts) > 2 else 0.0


def envelope(pcm: np.ndarray, rate: int, hop_s: float = 0.02) -> np.ndarray:
    hop = int(rate * hop_s)
    n = pcm.size // hop
    x = pcm[: n * hop].astype(np.float64).reshape(n, hop)
    return np.sqrt((x ** 2).mean(axis=1))


def best_correlation(received: np.ndarray, reference: np.ndarray) -> float:
    """Max normalised correlation of `received` against the looping `reference` envelope."""
    if received.size < reference.size:
        return 0.0
    ref = np.tile(reference, received.size // reference.size + 2)
    best = -1.0
    r = (received - received.mean()) / (received.std() + 1e-9)
    for lag in range(reference.size):
        seg = ref[lag:lag + received.size]
        s = (seg - seg.mean()) / (seg.std() + 1e-9)
        best = max(best, float((r * s).mean()))
    return best


def epoch(mono: float) -> float:
    """A time.monotonic() value as epoch milliseconds (the page's clock)."""
    return (time.time() - time.monotonic() + mono) * 1000.0
