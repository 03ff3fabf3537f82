"""Offline rendering to MP4: same session code path, durations match the audio."""

from __future__ import annotations

import wave
from pathlib import Path

import av
import numpy as np

from facecast.render import builtin_avatar
from facecast.render.offline import decode_audio, render_to_mp4
from tests.render.speech import vowel


def write_wav(path: Path, pcm24k: np.ndarray, rate: int = 16000) -> None:
    n = int(len(pcm24k) * rate / 24000)
    x = np.interp(np.linspace(0, len(pcm24k) - 1, n), np.arange(len(pcm24k)), pcm24k).astype(np.int16)
    stereo = np.stack([x, x], 1).reshape(-1)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(stereo.tobytes())


def test_render_to_mp4(tmp_path: Path) -> None:
    wav = tmp_path / "in.wav"
    write_wav(wav, np.concatenate([vowel(750, 1250, 0.5), vowel(330, 2300, 0.53)]))
    pcm = decode_audio(wav)
    assert abs(len(pcm) / 24000 - 1.03) < 0.01
    seen: list[tuple[int, int]] = []
    stats = render_to_mp4(builtin_avatar(), wav, tmp_path / "out.mp4", "small",
                          progress=lambda i, n: seen.append((i, n)))
    assert stats.frames == 26 and seen[-1] == (26, 26)
    assert abs(stats.video_seconds - stats.audio_seconds) < 0.04
    with av.open(str(tmp_path / "out.mp4")) as c:
        v, a = c.streams.video[0], c.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        assert (v.width, v.height) == (256, 256)
        frames = sum(1 for _ in c.decode(video=0))
    assert frames == 26
    with av.open(str(tmp_path / "out.mp4")) as c:
        audio = sum(f.samples for f in c.decode(audio=0))
    assert abs(audio / 24000 - frames / 25) < 0.05
