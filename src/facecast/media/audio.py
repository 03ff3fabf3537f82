"""PCM conventions and resampling shared by engines, the renderer and the transport.

Agent speech inside facecast is always signed 16-bit mono at 24 kHz (`SAMPLE_RATE`); one video
frame at 25 fps covers `SAMPLES_PER_FRAME` samples of it.
"""

from __future__ import annotations

import numpy as np
import soxr

SAMPLE_RATE = 24_000
FPS = 25
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 960

# libsoxr's "LQ" filter for the microphone path: still a proper band-limited resampler, but its
# short filter releases output within 2.5-17 ms where "HQ" holds 0-38 ms back (bench/e2e.py).
MIC_RESAMPLE_QUALITY = "LQ"


def as_int16(pcm: bytes | bytearray | memoryview | np.ndarray) -> np.ndarray:
    """View raw s16le bytes (or an array) as a 1-D int16 array without copying when possible."""
    if isinstance(pcm, np.ndarray):
        if pcm.dtype != np.int16:
            raise TypeError(f"expected int16 PCM, got {pcm.dtype}")
        return pcm.reshape(-1)
    if len(pcm) % 2:
        raise ValueError("s16le PCM must have an even number of bytes")
    return np.frombuffer(pcm, dtype="<i2")


def to_mono(samples: np.ndarray, channels: int) -> np.ndarray:
    """Interleaved int16 → mono int16 (mean of channels)."""
    if channels == 1:
        return samples.reshape(-1)
    frames = samples.reshape(-1, channels).astype(np.int32)
    return (frames.sum(axis=1) // channels).astype(np.int16)


class Resampler:
    """Streaming resampler (libsoxr) for mono int16 audio; keeps filter state between chunks."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = "HQ") -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = (
            None if in_rate == out_rate
            else soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality=quality)
        )

    def process(self, pcm: np.ndarray, last: bool = False) -> np.ndarray:
        if self._stream is None:
            return pcm
        return self._stream.resample_chunk(pcm, last=last)

    def reset(self) -> None:
        if self._stream is not None:
            self._stream.clear()


class Chunker:
    """Cuts a stream of int16 samples into fixed-size chunks (e.g. 20 ms for the engine)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._pending = np.zeros(0, dtype=np.int16)

    def push(self, pcm: np.ndarray) -> list[np.ndarray]:
        data = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        n = data.size // self.size
        chunks = [data[i * self.size:(i + 1) * self.size] for i in range(n)]
        self._pending = data[n * self.size:].copy()
        return chunks

    def reset(self) -> None:
        self._pending = np.zeros(0, dtype=np.int16)
