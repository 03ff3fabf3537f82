"""Shared fixtures: espeak-ng speech at 24 kHz and synthetic vowels (deterministic)."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import pytest
import soxr
from scipy.signal import lfilter

from facecast.render import SAMPLE_RATE, SAMPLES_PER_FRAME


def espeak(text: str, voice: str = "en-us") -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed")
    wav = subprocess.run(["espeak-ng", "-v", voice, "--stdout", text], capture_output=True,
                         check=True).stdout
    with wave.open(io.BytesIO(wav)) as w:
        sr = w.getframerate()
        x = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    y = soxr.resample(x.astype(np.float32) / 32768.0, sr, SAMPLE_RATE)
    return (np.clip(y, -1, 1) * 32767).astype(np.int16)


def vowel(f1: float, f2: float, seconds: float = 0.6, f0: float = 120.0, level: float = 0.3) -> np.ndarray:
    """A synthetic vowel: glottal pulse train through two formant resonators."""
    n = int(seconds * SAMPLE_RATE)
    src = np.zeros(n)
    src[:: int(SAMPLE_RATE / f0)] = 1.0
    src = lfilter([1.0], [1.0, -0.95], src)  # spectral tilt
    y = src
    for f, bw in ((f1, 80.0), (f2, 100.0), (2800.0, 150.0)):
        r = np.exp(-np.pi * bw / SAMPLE_RATE)
        a = [1.0, -2 * r * np.cos(2 * np.pi * f / SAMPLE_RATE), r * r]
        y = lfilter([1.0 - r], a, y)
    y = y / np.abs(y).max() * level
    ramp = np.minimum(1.0, np.minimum(np.arange(n), n - np.arange(n)) / 240.0)
    return (y * ramp * 32767).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), np.int16)


def frames_of(pcm: np.ndarray) -> np.ndarray:
    """Pad to whole frames."""
    n = -(-len(pcm) // SAMPLES_PER_FRAME) * SAMPLES_PER_FRAME
    return np.concatenate([pcm, np.zeros(n - len(pcm), np.int16)])
