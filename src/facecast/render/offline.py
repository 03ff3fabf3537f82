"""Offline rendering to MP4 (the `facecast render` command): same code path as live sessions.

Audio of any format is decoded with PyAV, resampled to 24 kHz mono s16 and padded with silence
to a whole number of 40 ms frames, so the H.264 video and the AAC audio last exactly as long.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from facecast.render.avatar import Avatar
from facecast.render.presets import SAMPLE_RATE, SAMPLES_PER_FRAME
from facecast.render.session import open_render_session

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderStats:
    frames: int
    audio_seconds: float
    video_seconds: float
    render_cpu_ms_per_frame: float
    wall_seconds: float
    out_path: Path


def decode_audio(path: Path) -> np.ndarray:
    """Any audio file -> int16 mono 24 kHz samples."""
    chunks: list[np.ndarray] = []
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    return np.concatenate(chunks).astype(np.int16) if chunks else np.zeros(0, np.int16)


def render_to_mp4(avatar: Avatar, audio_path: Path, out_path: Path, preset: str = "default",
                  progress: Callable[[int, int], None] | None = None, *, seed: int = 0,
                  x264_preset: str = "veryfast", crf: int = 23) -> RenderStats:
    """Render `audio_path` spoken by `avatar` into an H.264 + AAC MP4 at `out_path`."""
    t_wall = time.perf_counter()
    pcm = decode_audio(Path(audio_path))
    audio_seconds = len(pcm) / SAMPLE_RATE
    n_frames = max(1, -(-len(pcm) // SAMPLES_PER_FRAME))
    pcm = np.concatenate([pcm, np.zeros(n_frames * SAMPLES_PER_FRAME - len(pcm), np.int16)])
    session = open_render_session(avatar, preset, seed=seed)
    p = session.preset
    la_len = session.lookahead_frames * SAMPLES_PER_FRAME
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cpu = 0.0
    with av.open(str(out_path), mode="w") as container:
        vs = container.add_stream("libx264", rate=p.fps)
        vs.width, vs.height, vs.pix_fmt = p.width, p.height, "yuv420p"
        vs.options = {"preset": x264_preset, "crf": str(crf), "movflags": "+faststart"}
        aud = container.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        for n in range(n_frames):
            a = n * SAMPLES_PER_FRAME
            chunk = pcm[a:a + SAMPLES_PER_FRAME]
            t0 = time.process_time()
            rgb = session.render(chunk, pcm[a + SAMPLES_PER_FRAME:a + SAMPLES_PER_FRAME + la_len])
            cpu += time.process_time() - t0
            vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            vf.pts = n
            container.mux(vs.encode(vf))
            af = av.AudioFrame.from_ndarray(chunk.reshape(1, -1), format="s16", layout="mono")
            af.sample_rate = SAMPLE_RATE
            af.pts = a
            container.mux(aud.encode(af))
            if progress is not None:
                progress(n + 1, n_frames)
        container.mux(vs.encode(None))
        container.mux(aud.encode(None))
    stats = RenderStats(n_frames, audio_seconds, n_frames / p.fps, 1e3 * cpu / n_frames,
                        time.perf_counter() - t_wall, out_path)
    logger.info("rendered %s: %d frames, %.2f ms/frame render CPU", out_path, n_frames,
                stats.render_cpu_ms_per_frame)
    return stats
