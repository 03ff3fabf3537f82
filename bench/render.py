"""Renderer figures: lip-sync and warp2d render cost per frame at each preset (built-in
character; a real photo, scikit-image's astronaut, at 512²), avatar preparation time, lookahead. One command, prints a table:

    .venv/bin/python bench/render.py [--seconds 10]

CPU figures are process CPU time (`time.process_time`) with OpenCV and BLAS limited to one
thread, so they are one-core costs and do not depend on machine load.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import io  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import soxr  # noqa: E402

from facecast.render import (  # noqa: E402
    LOOKAHEAD_SAMPLES,
    PRESETS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    Avatar,
    LipSyncAnalyzer,
    builtin_avatar,
    open_render_session,
    prepare_avatar,
)

TEXT = ("Hello! I am Juniper, your assistant. I can look things up, book a table, or just chat. "
        "Please tell me what you would like to do, and we will take it from there.")


def speech(seconds: float) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        raise SystemExit("espeak-ng is needed for the benchmark speech")
    wav = subprocess.run(["espeak-ng", "-v", "en-us", "--stdout", TEXT], capture_output=True,
                         check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    y = soxr.resample(x.astype(np.float32) / 32768.0, sr, SAMPLE_RATE)
    pcm = (np.clip(y, -1, 1) * 32767).astype(np.int16)
    reps = int(np.ceil(seconds * SAMPLE_RATE / len(pcm)))
    pcm = np.tile(pcm, reps)[: int(seconds * SAMPLE_RATE)]
    return pcm[: len(pcm) // SAMPLES_PER_FRAME * SAMPLES_PER_FRAME]


def bench_lipsync(pcm: np.ndarray, chunk: int = 480) -> float:
    a = LipSyncAnalyzer()
    t = time.process_time()
    n = 0
    for i in range(0, len(pcm), chunk):
        n += len(a.push(pcm[i:i + chunk]))
    return 1e3 * (time.process_time() - t) / max(n, 1)


def bench_session(pcm: np.ndarray, preset: str, background: str = "default",
                  avatar: Avatar | None = None) -> tuple[float, float]:
    t = time.process_time()
    s = open_render_session(avatar or builtin_avatar(), preset, background=background, seed=1)
    open_ms = 1e3 * (time.process_time() - t)
    la = s.lookahead_frames * SAMPLES_PER_FRAME
    n = len(pcm) // SAMPLES_PER_FRAME
    t = time.process_time()
    for i in range(n):
        a = i * SAMPLES_PER_FRAME
        s.render(pcm[a:a + SAMPLES_PER_FRAME], pcm[a + SAMPLES_PER_FRAME:a + SAMPLES_PER_FRAME + la])
    return 1e3 * (time.process_time() - t) / n, open_ms


def bench_prepare(reps: int = 3) -> tuple[float, dict[str, float]]:
    av = builtin_avatar()
    ok, png = cv2.imencode(".png", cv2.cvtColor(av.image, cv2.COLOR_RGB2BGR))
    prepare_avatar(png.tobytes())  # load the models once
    t = time.process_time()
    for _ in range(reps):
        p = prepare_avatar(png.tobytes())
    return 1e3 * (time.process_time() - t) / reps, p.info["ms"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    pcm = speech(args.seconds)
    builtin_avatar()
    print(f"speech: {len(pcm) / SAMPLE_RATE:.1f} s espeak-ng en-us, 24 kHz; one core "
          f"(cv2.setNumThreads(1)); process CPU time\n")
    lip = bench_lipsync(pcm)
    print(f"{'preset':<9} {'size':>9} {'lip-sync':>9} {'render':>9} {'total':>9} {'RGBA':>9} "
          f"{'fps/core':>9} {'open':>8}")
    print(f"{'':<9} {'':>9} {'ms/frame':>9} {'ms/frame':>9} {'ms/frame':>9} {'ms/frame':>9} "
          f"{'':>9} {'ms':>8}")
    for name, p in PRESETS.items():
        total, open_ms = bench_session(pcm, name)
        rgba, _ = bench_session(pcm[: len(pcm) // 2], name, "transparent")
        render = total - lip
        print(f"{name:<9} {p.width}x{p.height:<5} {lip:>9.2f} {render:>9.2f} {total:>9.2f} "
              f"{rgba:>9.2f} {1e3 / total:>9.0f} {open_ms:>8.1f}")
    try:
        from skimage import data
    except ImportError:
        print("(scikit-image not installed: no photo figures)")
    else:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
        photo = prepare_avatar(buf.tobytes(), name="astronaut").avatar
        total, open_ms = bench_session(pcm, "default", avatar=photo)
        rgba, _ = bench_session(pcm[: len(pcm) // 2], "default", "transparent", avatar=photo)
        print(f"{'photo':<9} {'512x512':<9} {lip:>9.2f} {total - lip:>9.2f} {total:>9.2f} "
              f"{rgba:>9.2f} {1e3 / total:>9.0f} {open_ms:>8.1f}   (astronaut, upper teeth kept)")
    prep, parts = bench_prepare()
    print(f"\navatar preparation (built-in portrait 1024x1024 through prepare_avatar): "
          f"{prep:.0f} ms CPU; last run wall ms {parts}")
    print(f"lookahead: {LOOKAHEAD_SAMPLES} samples = {1e3 * LOOKAHEAD_SAMPLES / SAMPLE_RATE:.1f} ms "
          f"(render sessions ask for {open_render_session(builtin_avatar(), 'small').lookahead_frames} "
          f"frames = {1e3 * 2 * SAMPLES_PER_FRAME / SAMPLE_RATE:.0f} ms)")


if __name__ == "__main__":
    main()
