"""Idle life: blinks, small head motion, breathing, and a little speech-driven emphasis.

Everything is a deterministic function of the seed, the frame count and the loudness fed in,
so a session replays identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from facecast.render.presets import FPS

# blink lid profile per frame at 25 fps: 80 ms closing, 40 ms hold, 140 ms opening
_BLINK = (0.55, 1.0, 1.0, 0.7, 0.4, 0.15)


@dataclass(frozen=True)
class Motion:
    """Idle coefficients for one frame. Translations are in pixels at 512 px, roll in radians."""

    head_x: float
    head_y: float
    roll: float
    blink: float
    brow: float
    breath: float


class IdleMotion:
    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng(seed)
        r = self._rng
        self._phase = r.uniform(0, 2 * math.pi, 8)
        self._freq = np.array([0.071, 0.137, 0.053, 0.113, 0.089, 0.161, 0.043, 0.097]) * r.uniform(0.85, 1.15, 8)
        self._next_blink = int(r.uniform(0.8, 2.5) * FPS)
        self._blink_start = -100
        self._energy = 0.0
        self._prev_loud = 0.0
        self._brow = 0.0

    def step(self, n: int, loud: float) -> Motion:
        """Motion for frame `n`; `loud` is the speech loudness (0..1) of that frame."""
        t = n / FPS
        s = np.sin(2 * math.pi * self._freq * t + self._phase)
        # speech envelope: nods and brow flashes on loud onsets
        self._energy += (0.35 if loud > self._energy else 0.08) * (loud - self._energy)
        onset = max(loud - self._prev_loud, 0.0)
        self._prev_loud = 0.7 * self._prev_loud + 0.3 * loud
        self._brow = max(self._brow * 0.82, min(onset * 1.6, 1.0) if onset > 0.35 else 0.0)
        head_x = 1.6 * s[0] + 0.7 * s[1]
        head_y = 0.9 * s[2] + 0.4 * s[3] + 1.4 * self._energy * (0.6 + 0.4 * s[4])
        roll = math.radians(1.3 * s[5] + 0.6 * s[6] + 0.5 * self._energy * s[7])
        breath = 0.5 * (1 - math.cos(2 * math.pi * t / 4.2 + self._phase[0]))
        # blinks every 2..5.5 s, sometimes a double blink
        if n >= self._next_blink:
            self._blink_start = n
            gap = self._rng.uniform(2.0, 5.5)
            if self._rng.uniform() < 0.12:
                gap = 0.45
            self._next_blink = n + int(gap * FPS)
        k = n - self._blink_start
        blink = _BLINK[k] if 0 <= k < len(_BLINK) else 0.0
        return Motion(head_x, head_y + 0.35 * breath, roll, blink, self._brow, breath)
