"""End-to-end figures in a real browser (Debian chromium, private network namespace).

    sudo .venv/bin/python bench/e2e.py [--bursts 12] [--sessions 1,4,8]

The real app (REST, session manager, Cartesia engine, transport) runs in the namespace with the
test-pattern renderer; the stand-in Cartesia agent is scripted from here. Prints a table.
Times are epoch ms read on one machine (browser `performance.timeOrigin + now()`, Python
`time.time()`); the browser's audio is timed per 256-sample ScriptProcessor block (5.3 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "e2e"))

from browser import epoch, join, mute_and_settle, probe  # noqa: E402

from conftest import (  # noqa: E402
    CHROMIUM_ARGS,
    browser_unavailable,
    chromium_wrapper,
    make_mic_wav,
    private_netns,
    start_server,
)
from facecast.testing.cartesia_agent import CartesiaStandIn  # noqa: E402
from facecast.transport.tracks import AUDIO_SR_LEAD_S  # noqa: E402

ENGINE = {"type": "cartesia", "agent_id": "bench", "access_token": "bench"}


STATS_JS = """async () => {
  const pc = window.facecastDemo.avatar.pc;
  const out = {};
  (await pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp") out[s.kind] = s;
    if (s.type === "media-playout") out.playout = s;
  });
  return JSON.parse(JSON.stringify(out));
}"""


def stat_delta(a: dict, b: dict, kind: str, total: str, count: str) -> float:
    """Mean of a cumulative getStats total over the window between snapshots a and b (ms)."""
    try:
        n = b[kind][count] - a[kind][count]
        return 1000.0 * (b[kind][total] - a[kind][total]) / n if n > 0 else float("nan")
    except KeyError:
        return float("nan")


def pct(xs: list[float], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def tone(seconds: float, rate: int) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (14000 * np.sin(2 * np.pi * 180 * t)).astype(np.int16)


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0   # utime + stime, seconds (CLK_TCK 100)


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def server_pid(popen_pid: int) -> int:
    """`ip netns exec` execs python, so the Popen pid is the server."""
    return popen_pid


async def create(http: httpx.AsyncClient, srv) -> dict:
    r = await http.post(f"{srv.base_url}/api/v1/sessions", headers=srv.auth,
                        json={"conversation_engine": ENGINE, "user_absent_timeout": 10})
    r.raise_for_status()
    return r.json()


# What docs/webrtc.md proposes for the Web SDK: on an interrupted `avatar_ended_speaking`, silence
# the remote audio track at once (what the browser already buffered is dropped speech) and turn
# it back on once that has played out. Injected with `--sdk-mute` to measure it.
SDK_MUTE_JS = """(ms) => {
  const a = window.facecastDemo.avatar;
  a.on("avatar_ended_speaking", (p) => {
    if (!p.interrupted) return;
    const track = a._remote && a._remote.getAudioTracks()[0];
    if (!track) return;
    track.enabled = false;
    clearTimeout(a.__unmute);
    a.__unmute = setTimeout(() => { track.enabled = true; }, ms);
  });
}"""
SDK_MUTE_MS = 150


async def latency_run(srv, agent, browser, bursts: int, sdk_mute: bool = False) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {"chunk_to_frame": [], "clear_to_silence": [], "av_offset": [],
                                   "create_to_frame": [], "audio_jb": [], "audio_jb_min": [],
                                   "video_jb": [], "video_jb_min": [], "video_decode": [], "audio_jb_target": [],
                                   "audio_jitter": [], "sync_ept": [],
                                   "playout": [], "clear_concealed": []}
    async with httpx.AsyncClient() as http:
        ctx = await browser.new_context()
        page = await ctx.new_page()
        await page.add_init_script(path=str(ROOT / "tests" / "e2e" / "probe.js"))
        await page.goto(f"{srv.base_url}/demo")
        t_create = time.time() * 1000
        s = await create(http, srv)
        await page.evaluate("window.facecastDemo !== undefined")
        from browser import JOIN_JS
        res = await page.evaluate(JOIN_JS, [s["token"], "default"])
        assert res["ok"], res
        if sdk_mute:
            await page.evaluate(SDK_MUTE_JS, SDK_MUTE_MS)
        conn = await agent.next_connection(10)
        await conn.wait_started()
        await mute_and_settle(page, conn)   # mic off: no VAD
        frames, _ = await probe(page)
        out["create_to_frame"].append(frames[0]["presented"] - t_create)
        rate = conn.sample_rate
        for i in range(bursts):
            await asyncio.sleep(1.0)
            st0 = await page.evaluate(STATS_JS)
            n_before = len([e for e in conn.events if e.event == "speech_started"])
            await conn.say(tone(1.2 if i % 2 else 0.5, rate))
            # logged just before the first media_output chunk of this speech is sent
            ev = await conn.wait_for("speech_started", timeout=5, count=n_before + 1)
            t_chunk = epoch(ev.time)
            if i % 2:   # long burst: cut it with clear after 0.6 s
                await asyncio.sleep(0.6)
                await conn._barge_in()   # the stand-in's own barge-in path: sends `clear`
                cl = [e for e in conn.events if e.event == "clear"][-1]
                t_clear = epoch(cl.time)
            await asyncio.sleep(1.2)
            st1 = await page.evaluate(STATS_JS)
            frames, audio = await probe(page)
            out["audio_jb"].append(stat_delta(st0, st1, "audio", "jitterBufferDelay", "jitterBufferEmittedCount"))
            out["audio_jb_min"].append(stat_delta(st0, st1, "audio", "jitterBufferMinimumDelay", "jitterBufferEmittedCount"))
            for st in (st0, st1):
                a_ept = st.get("audio", {}).get("estimatedPlayoutTimestamp")
                v_ept = st.get("video", {}).get("estimatedPlayoutTimestamp")
                if a_ept and v_ept:   # audio SRs lead by AUDIO_SR_LEAD_S: undo it
                    out["sync_ept"].append(v_ept - a_ept - 1000 * AUDIO_SR_LEAD_S)
            out["audio_jb_target"].append(stat_delta(st0, st1, "audio", "jitterBufferTargetDelay", "jitterBufferEmittedCount"))
            out["audio_jitter"].append(1000.0 * st1.get("audio", {}).get("jitter", float("nan")))
            out["video_jb"].append(stat_delta(st0, st1, "video", "jitterBufferDelay", "jitterBufferEmittedCount"))
            out["video_jb_min"].append(stat_delta(st0, st1, "video", "jitterBufferMinimumDelay", "jitterBufferEmittedCount"))
            out["video_decode"].append(stat_delta(st0, st1, "video", "totalDecodeTime", "framesDecoded"))
            out["playout"].append(stat_delta(st0, st1, "playout", "totalPlayoutDelay", "totalSamplesCount"))
            if i % 2:
                a0, a1 = st0.get("audio", {}), st1.get("audio", {})
                out["clear_concealed"].append(
                    1000.0 * ((a1.get("concealedSamples", 0) - a1.get("silentConcealedSamples", 0))
                              - (a0.get("concealedSamples", 0) - a0.get("silentConcealedSamples", 0))) / 48000)
            opened = [f for f in frames if f["t"] >= t_chunk and f["mouth"] > 120]
            loud = [a for a in audio if a["t"] >= t_chunk and a["rms"] > 0.05]
            if opened:
                out["chunk_to_frame"].append(opened[0]["presented"] - t_chunk)
            if opened and loud:
                # the audio block's end time minus its length ≈ onset; positive = audio late
                out["av_offset"].append((loud[0]["t"] - 256 / 48) - opened[0]["presented"])
            if i % 2:
                quiet = [a for a in audio if a["t"] >= t_clear and a["rms"] < 0.01]
                if quiet:
                    out["clear_to_silence"].append(quiet[0]["t"] - t_clear)
        await http.delete(f"{srv.base_url}/api/v1/sessions/{s['session_id']}", headers=srv.auth)
        await ctx.close()
    return out


async def load_run(srv, agent, browser, n: int, pid: int) -> dict[str, float]:
    async with httpx.AsyncClient() as http:
        rss0 = proc_rss_mb(pid)
        ctxs, sessions = [], []
        for _ in range(n):
            ctx = await browser.new_context()
            page = await ctx.new_page()
            await page.add_init_script(path=str(ROOT / "tests" / "e2e" / "probe.js"))
            s = await create(http, srv)
            res = await join(page, srv.base_url, s["token"])
            assert res["ok"], res
            await agent.next_connection(10)
            ctxs.append((ctx, page))
            sessions.append(s)
        await asyncio.sleep(3.0)
        c0, t0 = proc_cpu(pid), time.monotonic()
        await asyncio.sleep(10.0)
        cpu = (proc_cpu(pid) - c0) / (time.monotonic() - t0)
        rss = proc_rss_mb(pid)
        intervals: list[float] = []
        for _, page in ctxs:
            frames, _ = await probe(page)
            ts = [f["t"] for f in frames[-200:]]
            intervals += list(np.diff(ts))
        for s in sessions:
            await http.delete(f"{srv.base_url}/api/v1/sessions/{s['session_id']}", headers=srv.auth)
        for ctx, _ in ctxs:
            await ctx.close()
    return {"n": n, "cpu": cpu, "p99_interval": pct(intervals, 99), "rss_per": (rss - rss0) / n}


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bursts", type=int, default=12)
    ap.add_argument("--sessions", default="1,4")
    ap.add_argument("--sdk-mute", action="store_true",
                    help="inject the proposed SDK change: mute buffered audio on barge-in")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    reason = browser_unavailable()
    if reason:
        sys.exit(f"cannot run: {reason}")
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="facecast-bench-") as d, private_netns() as ns:
        work = Path(d)
        wav = work / "mic.wav"
        make_mic_wav(wav)
        async with CartesiaStandIn(host=ns.outside, port=0, persona=None) as agent:
            srv = await asyncio.to_thread(start_server, ns, agent.url, work / "data",
                                          extra=["--max-sessions", "30"])
            try:
                async with async_playwright() as pw:
                    browser = await pw.chromium.launch(
                        executable_path=str(chromium_wrapper(ns, work)), headless=True,
                        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={wav}",
                              f"--unsafely-treat-insecure-origin-as-secure=http://{ns.inside}:8000"])
                    lat = await latency_run(srv, agent, browser, args.bursts, args.sdk_mute)
                    loads = [await load_run(srv, agent, browser, int(n), srv.proc.pid)
                             for n in args.sessions.split(",")]
                    await browser.close()
            finally:
                srv.proc.terminate()
                srv.proc.wait(10)

    print(f"\nfacecast e2e (Chromium, pattern renderer, {len(os.sched_getaffinity(0))} cores"
          f"{', SDK mutes buffered audio on barge-in' if args.sdk_mute else ''}; "
          f"1-min load average before the run {load_before:.2f})\n")
    print("| figure | p50 | p90 | n | target |\n|---|---|---|---|---|")
    rows = [("engine chunk in → first frame with it displayed (ms)", lat["chunk_to_frame"], "≤ 100 p50"),
            ("clear → browser audio silent (ms)", lat["clear_to_silence"], "≤ 60 p50"),
            ("A/V offset at the browser, audio − video (ms)", lat["av_offset"], "|x| ≤ 20"),
            ("Chrome's own A/V estimate: video − audio estimatedPlayoutTimestamp (ms)", lat["sync_ept"], "|x| ≤ 20"),
            ("session create → first frame displayed (ms)", lat["create_to_frame"], "≤ 1000"),
            ("browser audio jitter buffer delay (ms, getStats)", lat["audio_jb"], "-"),
            ("browser audio jitter buffer target delay, incl. A/V sync (ms)", lat["audio_jb_target"], "-"),
            ("browser audio jitter buffer minimum delay, network jitter only (ms)", lat["audio_jb_min"], "-"),
            ("browser audio RTP interarrival jitter (ms, RFC 3550)", lat["audio_jitter"], "-"),
            ("browser video jitter buffer delay (ms, getStats)", lat["video_jb"], "-"),
            ("browser video jitter buffer minimum delay, network jitter only (ms)", lat["video_jb_min"], "-"),
            ("browser video decode time (ms)", lat["video_decode"], "-"),
            ("browser audio playout delay (ms, media-playout)", lat["playout"], "-"),
            ("non-silent concealment per barge-in (ms of audio)", lat["clear_concealed"], "-")]
    for name, xs, target in rows:
        print(f"| {name} | {pct(xs, 50):.0f} | {pct(xs, 90):.0f} | {len(xs)} | {target} |")
    print("\n| concurrent sessions | server CPU (cores) | CPU per session | p99 frame interval at browser (ms) | RSS per session (MB) |")
    print("|---|---|---|---|---|")
    for r in loads:
        print(f"| {r['n']} | {r['cpu']:.2f} | {r['cpu'] / r['n']:.3f} | {r['p99_interval']:.0f} | {r['rss_per']:.1f} |")
    print("\nmic → media_input: see bench/capacity.py (aiortc client beeps, stand-in agent receive times)")


if __name__ == "__main__":
    asyncio.run(main())
