"""How many concurrent 25 fps sessions one server process sustains (real renderer, real transport).

    sudo .venv/bin/python bench/capacity.py [--sessions 1,2,4,6,8,10,12] [--seconds 15]
                                            [--decode] [--profile N]

Three kinds of process, so each one's CPU is counted apart:

- the **server**: the real app (REST, session manager, Cartesia engine, real renderer at 512²,
  media clock, aiortc transport) with `webrtc_loopback`, like `facecast serve`;
- the **clients**: one process holding N plain aiortc clients (`transport/client.py`), one per
  session. By default they record RTP arrivals and do not decode (`--decode` decodes VP8 and Opus
  like a viewer would), so the load generator stays cheap on the shared cores. Client 0's mic
  sends a 1 kHz beep every 2 s; the others send silence;
- this **driver**: the stand-in Cartesia agent (`testing/cartesia_agent.py`). Every session's agent
  speaks 2 s of espeak-ng speech, then is quiet for ~2 s (random phase), so the renderer works
  half the time, and the stand-in timestamps every `media_input` it receives (mic → agent).

Everything runs in a private network namespace with only loopback up (`unshare -n`, as root),
so no packet can leave the machine; without root it runs on 127.0.0.1 with no STUN/TURN.

Per N it prints server CPU (cores) and RSS, client CPU, video frame interval at the clients
(arrival of each complete frame; p50/p99/max), audio continuity (RTP packets received / expected,
gaps over 60 ms), mic → media_input latency, and the loop lag the server logs; then the largest
N with p99 frame interval ≤ 60 ms. It stops early once a step fails badly.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SCRIPT = str(Path(__file__).resolve())
ROOT = Path(SCRIPT).parent.parent
_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
SPY = _spy if Path(_spy).exists() else None
FRAME_S = 0.04
BEEP_EVERY_S = 2.0
BEEP_S = 0.1
BEEP_RATE = 48_000
SPEAK_S = 2.0
P99_TARGET_MS = 60.0


def pct(xs: Any, q: float) -> float:
    xs = np.asarray(xs, dtype=float)
    return float(np.percentile(xs, q)) if xs.size else float("nan")


# -- /proc ----------------------------------------------------------------------------------------
def proc_cpu(pid: int) -> float:
    """utime + stime of `pid` and its threads, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def thread_cpu_by_name() -> dict[str, float]:
    """(In the server) CPU seconds per Python thread group (thread name without its number)."""
    import threading

    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for th in threading.enumerate():
        name = th.name.split(" (")[0].rstrip("0123456789").rstrip("_-")
        try:
            fields = Path(f"/proc/self/task/{th.native_id}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


THREAD_GROUPS = {   # thread name → what runs there
    "MainThread": "event loop (RTP/SRTP/DTLS/SCTP, asyncio, engine, media clock)",
    "asyncio": "aiortc encoders (VP8, Opus) in the default executor",
    "facecast-work": "renderer (lip-sync + warp) in the app executor",
    "audio-decoder": "mic Opus decode (one thread per peer)",
}


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, to see what else was running."""
    parts = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = parts[3] + parts[4]
    return float(sum(parts) - idle), float(sum(parts))


# -- the server process ---------------------------------------------------------------------------
async def serve(args: argparse.Namespace) -> None:
    import logging

    import uvicorn

    from facecast.api.app import create_app
    from facecast.config import Settings
    from facecast.demo_runner import _dev_key

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval / 1000)
    data = Path(args.data_dir)
    settings = Settings(database_url=f"sqlite:///{data}/facecast.db", data_dir=data,
                        cartesia_url=args.cartesia_url, host="127.0.0.1", port=args.port,
                        max_sessions=64, secret_key="x" * 40, webrtc_loopback=True)
    key = await _dev_key(settings)
    app = create_app(settings)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_config=None,
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.02)
        if task.done():
            await task
            return
    lag = asyncio.create_task(loop_lag_reporter(Path(args.data_dir) / "loop_lag.jsonl"))
    print(json.dumps({"api_key": key, "base_url": f"http://127.0.0.1:{args.port}"}), flush=True)
    try:
        await task
    finally:
        lag.cancel()


async def loop_lag_reporter(path: Path) -> None:
    """Event-loop lag of this process: a 10 ms sleep's overshoot, one line per second."""
    with path.open("a") as out:
        while True:
            lags = []
            t_end = time.monotonic() + 1.0
            while time.monotonic() < t_end:
                t = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(time.monotonic() - t - 0.01)
            out.write(json.dumps({"t": time.monotonic(), "p50": pct(lags, 50), "max": max(lags),
                                  "threads": thread_cpu_by_name()}) + "\n")
            out.flush()


# -- the client process ---------------------------------------------------------------------------
def install_recording_jitter_buffer(decode: bool) -> None:
    """Clients log (arrival, RTP timestamp) of every audio packet and every complete video frame;
    unless `decode`, nothing reaches the decoders."""
    from aiortc import rtcrtpreceiver

    from facecast.transport import patches

    patches.install()
    base = rtcrtpreceiver.JitterBuffer

    class RecordingJitterBuffer(base):  # type: ignore[misc, valid-type]
        def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
            super().__init__(capacity, prefetch=prefetch, is_video=is_video)
            self.video = is_video
            self.log: list[tuple[float, int]] = []

        def add(self, packet: Any) -> Any:
            pli, frame = super().add(packet)
            now = time.monotonic()
            if self.video:
                if frame is not None:
                    self.log.append((now, frame.timestamp))
            else:
                self.log.append((now, packet.timestamp))
            return pli, (frame if decode else None)

    rtcrtpreceiver.JitterBuffer = RecordingJitterBuffer  # type: ignore[misc]


class BeepTrack:
    """A mic that sends silence, and a 1 kHz beep every `BEEP_EVERY_S`; logs each onset's send."""

    @staticmethod
    def make() -> Any:
        import fractions

        import av
        from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

        class _Beep(MediaStreamTrack):
            kind = "audio"

            def __init__(self) -> None:
                super().__init__()
                self.chunk = BEEP_RATE // 50
                self.n = 0
                self.start: float | None = None
                self.onsets: list[float] = []
                t = np.arange(int(BEEP_S * BEEP_RATE)) / BEEP_RATE
                self.beep = (12000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
                self.beep_every = int(BEEP_EVERY_S * 50)

            async def recv(self) -> av.AudioFrame:
                if self.readyState != "live":
                    raise MediaStreamError
                if self.start is None:
                    self.start = time.monotonic()
                await asyncio.sleep(max(0.0, self.start + self.n * 0.02 - time.monotonic()))
                k = self.n % self.beep_every
                out = np.zeros(self.chunk, np.int16)
                part = self.beep[k * self.chunk:(k + 1) * self.chunk]
                out[:part.size] = part
                if k == 0 and self.n > 0:
                    self.onsets.append(time.monotonic())   # handed to the Opus encoder now
                frame = av.AudioFrame.from_ndarray(out.reshape(1, -1), format="s16", layout="mono")
                frame.sample_rate = BEEP_RATE
                frame.pts = self.n * self.chunk
                frame.time_base = fractions.Fraction(1, BEEP_RATE)
                self.n += 1
                return frame

        return _Beep()


async def run_clients(args: argparse.Namespace) -> None:
    install_recording_jitter_buffer(args.decode)
    from facecast.transport.client import FacecastClient, PcmTrack

    tokens = args.tokens.split(",")
    beep = BeepTrack.make()
    clients = [FacecastClient(args.base, tok, mic=beep if i == 0 else PcmTrack(), keep_frames=1)
               for i, tok in enumerate(tokens)]
    await asyncio.gather(*(c.connect(timeout=30) for c in clients))
    print("READY", flush=True)
    t0 = time.monotonic() + args.warmup
    await asyncio.sleep(args.warmup + args.seconds)
    t1 = time.monotonic()
    result: dict[str, Any] = {"t0": t0, "t1": t1, "sessions": [],
                              "beeps": [t for t in beep.onsets if t0 <= t <= t1 - 0.5]}
    for c in clients:
        logs: dict[str, list[tuple[float, int]]] = {}
        for r in c.pc.getReceivers():
            jb = getattr(r, "_RTCRtpReceiver__jitter_buffer", None)
            if jb is not None and hasattr(jb, "log"):
                logs[r.track.kind] = [(t, ts) for t, ts in jb.log if t0 <= t <= t1]
        result["sessions"].append(logs)
    print(json.dumps(result), flush=True)
    await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)


def thread_share(lines: list[dict[str, Any]]) -> dict[str, float]:
    """Cores per thread group between the first and last loop-lag line of the window."""
    if len(lines) < 2:
        return {}
    a, b = lines[0], lines[-1]
    dt = b["t"] - a["t"]
    return {k: (v - a["threads"].get(k, 0.0)) / dt for k, v in b["threads"].items()}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


# -- the driver -----------------------------------------------------------------------------------
def summarise_client(session: dict[str, list[list[float]]]) -> dict[str, Any]:
    video = np.array(session.get("video") or [], dtype=float).reshape(-1, 2)
    audio = np.array(session.get("audio") or [], dtype=float).reshape(-1, 2)
    out: dict[str, Any] = {}
    if len(video) > 1:
        out["frame_iv"] = list(np.diff(video[:, 0]) * 1000)
        # RTP 90 kHz: frames the server skipped (render late) show as a 7200+ tick step
        steps = np.diff(video[:, 1]) % 2**32
        out["skipped"] = float(np.sum(np.maximum(0, np.round(steps / 3600) - 1)))
        out["frames"] = len(video)
    if len(audio) > 1:
        span = audio[-1, 0] - audio[0, 0]
        out["audio_expected"] = span / 0.02 + 1
        out["audio_got"] = len(audio)
        iv = np.diff(audio[:, 0]) * 1000
        out["audio_gaps"] = int(np.sum(iv > 60))
        out["audio_iv"] = list(iv)
        # RTP 48 kHz: 960 per 20 ms packet; a larger step is audio the server never sent
        steps = np.diff(audio[:, 1]) % 2**32
        out["audio_ts_missing"] = float(np.sum(np.maximum(0, steps / 960 - 1)))
    return out


def mic_latencies(beeps: list[float], received: list[tuple[float, float]]) -> list[float]:
    """Beep onset handed to the client's encoder → first loud media_input at the stand-in (ms)."""
    out = []
    for b in beeps:
        hit = [t for t, peak in received if t >= b and peak > 3000]
        if hit and hit[0] - b < 0.5:
            out.append((hit[0] - b) * 1000)
    return out


def instrument_standin() -> None:
    """Stamp every media_input the stand-in receives: (monotonic time, peak |sample|)."""
    from facecast.testing import cartesia_call
    from facecast.testing.cartesia_wire import classify, loads_frame

    orig = cartesia_call.AgentConnection._on_frame

    async def on_frame(self: Any, raw: str | bytes) -> None:
        t = time.monotonic()
        await orig(self, raw)
        try:
            name, payload = classify(self.protocol, loads_frame(raw))
            if name in ("media_input", "audio_input") and self.setup is not None:
                pcm = self.setup.audio.decode(payload)
                self.__dict__.setdefault("bench_rx", []).append(
                    (t, float(np.abs(pcm).max()) if pcm.size else 0.0))
        except Exception:
            pass

    cartesia_call.AgentConnection._on_frame = on_frame  # type: ignore[method-assign]


async def speak_forever(conn: Any, speech: np.ndarray) -> None:
    """2 s of speech, ~2 s of quiet, from a random phase: the avatar talks half the time."""
    await asyncio.sleep(random.uniform(0, 2 * SPEAK_S))
    while True:
        item = await conn.say(speech)
        await item.wait()
        await asyncio.sleep(SPEAK_S + random.uniform(-0.3, 0.3))


async def run_step(n: int, srv: dict[str, Any], agent: Any, speech_text: str, args: argparse.Namespace,
                   server_pid: int, data_dir: Path) -> dict[str, Any]:
    import httpx

    from facecast.media import tts

    auth = {"Authorization": f"Bearer {srv['api_key']}"}
    engine = {"type": "cartesia", "agent_id": "bench", "access_token": "bench"}
    sessions = []
    async with httpx.AsyncClient(timeout=30) as http:
        for _ in range(n):
            r = await http.post(f"{srv['base_url']}/api/v1/sessions", headers=auth,
                                json={"conversation_engine": engine, "user_absent_timeout": 30})
            r.raise_for_status()
            sessions.append(r.json())
        cmd = [sys.executable, SCRIPT, "_clients", "--base", srv["base_url"],
               "--tokens", ",".join(s["token"] for s in sessions), "--seconds", str(args.seconds),
               "--warmup", str(args.warmup)] + (["--decode"] if args.decode else [])
        client = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, cwd=ROOT,
                                                      limit=1 << 26)
        assert client.stdout is not None
        line = await asyncio.wait_for(client.stdout.readline(), 60)
        if line.strip() != b"READY":
            raise RuntimeError(f"clients failed to connect: {line!r}")
        conns = [await agent.next_connection(20) for _ in range(n)]   # engines start on join
        for c in conns:
            await c.wait_started(20)
        rate = conns[0].sample_rate
        speech = tts.synthesize(speech_text, sample_rate=rate)[: int(SPEAK_S * rate)]
        talkers = [asyncio.create_task(speak_forever(c, speech), name=f"talk-{i}")
                   for i, c in enumerate(conns)]
        await asyncio.sleep(args.warmup)
        rss0 = proc_rss_mb(server_pid)
        s0, c0, m0, w0 = proc_cpu(server_pid), proc_cpu(client.pid), machine_busy(), time.monotonic()
        d0 = time.process_time()
        profiler = None
        if args.profile == n and SPY is not None:
            profiler = await asyncio.create_subprocess_exec(
                SPY, "record", "--pid", str(server_pid), "--duration", str(int(args.seconds) - 1),
                "--rate", "200", "--threads", "--gil", "--format", "raw", "--nonblocking",
                "-o", args.profile_out,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        await asyncio.sleep(args.seconds)
        wall = time.monotonic() - w0
        s_cpu = (proc_cpu(server_pid) - s0) / wall
        c_cpu = (proc_cpu(client.pid) - c0) / wall
        d_cpu = (time.process_time() - d0) / wall
        m1 = machine_busy()
        ncpu = len(os.sched_getaffinity(0))
        busy = (m1[0] - m0[0]) / max(1.0, m1[1] - m0[1]) * ncpu
        rss = proc_rss_mb(server_pid)
        out_line = await asyncio.wait_for(client.stdout.readline(), 60)
        result = json.loads(out_line)
        await asyncio.wait_for(client.wait(), 30)
        if profiler is not None:
            await profiler.wait()
        for t in talkers:
            t.cancel()
        for t in talkers:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        rx = sorted(x for c in conns for x in c.__dict__.get("bench_rx", []))   # only client 0 beeps
        for s in sessions:
            await http.delete(f"{srv['base_url']}/api/v1/sessions/{s['session_id']}", headers=auth)
        await asyncio.sleep(2.0)

    per = [summarise_client(s) for s in result["sessions"]]
    iv = [x for p in per for x in p.get("frame_iv", [])]
    a_iv = [x for p in per for x in p.get("audio_iv", [])]
    lag_lines = read_jsonl(data_dir / "loop_lag.jsonl")
    lags = [x for x in lag_lines if result["t0"] <= x["t"] <= result["t1"]]
    return {
        "n": n, "server_cpu": s_cpu, "client_cpu": c_cpu, "machine_cpu": busy,
        "driver_cpu": d_cpu, "threads": thread_share(lags), "other_cpu": busy - s_cpu - c_cpu - d_cpu,
        "rss": rss, "rss_delta": rss - rss0,
        "fps": float(np.mean([p.get("frames", 0) / args.seconds for p in per])),
        "iv_p50": pct(iv, 50), "iv_p99": pct(iv, 99), "iv_max": max(iv) if iv else float("nan"),
        "skipped": float(np.sum([p.get("skipped", 0) for p in per])),
        "audio_ratio": float(np.sum([p.get("audio_got", 0) for p in per])
                             / max(1.0, np.sum([p.get("audio_expected", 0) for p in per]))),
        "audio_missing": float(np.sum([p.get("audio_ts_missing", 0) for p in per])),
        "audio_gaps": int(np.sum([p.get("audio_gaps", 0) for p in per])),
        "audio_iv_p99": pct(a_iv, 99),
        "mic": mic_latencies(result["beeps"], rx),
        "lag_p50": pct([x["p50"] * 1000 for x in lags], 50),
        "lag_max": max((x["max"] * 1000 for x in lags), default=float("nan")),
    }


async def drive(args: argparse.Namespace) -> None:
    from facecast.testing.cartesia_agent import CartesiaStandIn

    instrument_standin()
    steps = [int(x) for x in args.sessions.split(",")]
    rows: list[dict[str, Any]] = []
    text = ("Hello, I am the avatar. I can hear you clearly, and I will keep talking for a "
            "little while so that my mouth keeps moving.")
    with tempfile.TemporaryDirectory(prefix="facecast-capacity-") as d:
        d = args.workdir or d
        data = Path(d) / "data"
        os.mkdir(data)
        async with CartesiaStandIn(host="127.0.0.1", port=0, persona=None) as agent:
            cmd = [sys.executable, SCRIPT, "_serve", "--port", str(args.port),
                   "--cartesia-url", agent.url, "--data-dir", str(data),
                   "--switch-interval", str(args.switch_interval)]
            server = await asyncio.create_subprocess_exec(*cmd, stdout=subprocess.PIPE, cwd=ROOT)
            try:
                assert server.stdout is not None
                srv = json.loads(await asyncio.wait_for(server.stdout.readline(), 60))
                for n in steps:
                    row = await run_step(n, srv, agent, text, args, server.pid, data)
                    rows.append(row)
                    print_row(row, header=len(rows) == 1)
                    if row["iv_p99"] > 4 * P99_TARGET_MS or row["fps"] < 20:
                        print(f"(stopping: N={n} fell over)", flush=True)
                        break
            finally:
                server.terminate()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(server.wait(), 15)
    print("\nserver CPU by thread (cores):")
    names = sorted({k for r in rows for k in r["threads"]},
                   key=lambda k: -max(r["threads"].get(k, 0) for r in rows))
    print("| thread | " + " | ".join(f"N={r['n']}" for r in rows) + " | what |")
    print("|---|" + "---|" * len(rows) + "---|")
    for k in names:
        if max(r["threads"].get(k, 0) for r in rows) < 0.005:
            continue
        print(f"| {k} | " + " | ".join(f"{r['threads'].get(k, 0):.3f}" for r in rows)
              + f" | {THREAD_GROUPS.get(k, '')} |")
    ok = [r["n"] for r in rows if r["iv_p99"] <= P99_TARGET_MS]
    print(f"\nlargest N with p99 frame interval ≤ {P99_TARGET_MS:.0f} ms: {max(ok) if ok else 0}")
    mic = [x for r in rows for x in r["mic"]]
    print(f"mic → media_input at the agent (all steps): p50 {pct(mic, 50):.0f} ms, "
          f"p90 {pct(mic, 90):.0f} ms, n={len(mic)}")


def print_row(r: dict[str, Any], header: bool) -> None:
    if header:
        print(f"\nfacecast capacity ({len(os.sched_getaffinity(0))} cores, real renderer 512², "
              "aiortc clients in one separate process)\n", flush=True)
        print("| N | server CPU (cores) | per session | client CPU | agent CPU | other CPU | RSS (MB) | fps/session "
              "| frame interval p50 / p99 / max (ms) | frames skipped | audio pkts recv/expected "
              "| audio gaps > 60 ms | server loop lag p50 / max (ms) | mic → media_input p50 (ms) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(f"| {r['n']} | {r['server_cpu']:.2f} | {r['server_cpu'] / r['n']:.3f} | {r['client_cpu']:.2f} "
          f"| {r['driver_cpu']:.2f} | {r['other_cpu']:.2f} | {r['rss']:.0f} | {r['fps']:.1f} "
          f"| {r['iv_p50']:.0f} / {r['iv_p99']:.0f} / {r['iv_max']:.0f} | {r['skipped']:.0f} "
          f"| {r['audio_ratio']:.3f} | {r['audio_gaps']} | {r['lag_p50']:.1f} / {r['lag_max']:.0f} "
          f"| {pct(r['mic'], 50):.0f} (n={len(r['mic'])}) |", flush=True)


def in_private_netns(argv: list[str]) -> bool:
    """Re-run this command in a fresh network namespace with only loopback (root only)."""
    if os.environ.get("FACECAST_BENCH_NETNS") or os.geteuid() != 0 or not shutil.which("unshare"):
        return False
    env = dict(os.environ, FACECAST_BENCH_NETNS="1")
    script = 'ip link set lo up && exec "$@"'
    rc = subprocess.call(["unshare", "--net", "sh", "-c", script, "sh", sys.executable, *argv], env=env)
    sys.exit(rc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    s = sub.add_parser("_serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--cartesia-url", required=True)
    s.add_argument("--data-dir", required=True)
    s.add_argument("--switch-interval", type=float, default=0.0)
    c = sub.add_parser("_clients")
    c.add_argument("--base", required=True)
    c.add_argument("--tokens", required=True)
    c.add_argument("--seconds", type=float, required=True)
    c.add_argument("--warmup", type=float, required=True)
    c.add_argument("--decode", action="store_true")
    ap.add_argument("--sessions", default="1,2,4,6,8,10,12")
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--warmup", type=float, default=4.0)
    ap.add_argument("--port", type=int, default=8766)
    ap.add_argument("--decode", action="store_true", help="clients decode VP8 and Opus")
    ap.add_argument("--profile", type=int, default=0, help="py-spy the server at this N")
    ap.add_argument("--profile-out", default="capacity-profile.txt")
    ap.add_argument("--switch-interval", type=float, default=0.0,
                    help="server's sys.setswitchinterval in ms (Python's default is 5)")
    ap.add_argument("--workdir", default=None, help="keep the server's data and loop-lag log here")
    ap.add_argument("--no-netns", action="store_true", help="plain loopback, no private namespace")
    args = ap.parse_args()
    args.profile_out = os.path.abspath(args.profile_out)
    if args.cmd == "_serve":
        asyncio.run(serve(args))
    elif args.cmd == "_clients":
        asyncio.run(run_clients(args))
    else:
        if not args.no_netns:
            in_private_netns(sys.argv)
        asyncio.run(drive(args))


if __name__ == "__main__":
    main()
