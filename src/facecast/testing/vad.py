"""A small energy voice-activity detector with hysteresis and a hangover.

Good enough to play Cartesia's turn detection in the stand-in: a user turn starts once the level
stays above `start_db` for `start_ms`, and ends after `end_ms` below `stop_db` (the hangover).
Time is measured in samples fed, so the detector is deterministic and independent of how fast
the client sends audio.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class VadConfig:
    """Thresholds in dBFS (0 dB = full-scale square wave), durations in milliseconds."""

    start_db: float = -38.0     # level that counts as speech
    stop_db: float = -48.0      # level under which speech counts as over (hysteresis)
    start_ms: int = 80          # speech this long (without a gap) starts a turn
    end_ms: int = 600           # silence this long ends a turn (the hangover)
    frame_ms: int = 10

    def __post_init__(self) -> None:
        if self.stop_db > self.start_db:
            raise ValueError("stop_db must not be above start_db")
        if self.frame_ms <= 0 or self.start_ms < 0 or self.end_ms <= 0:
            raise ValueError("VAD durations must be positive")


@dataclass(frozen=True)
class VadEvent:
    kind: Literal["start", "end"]
    sample: int   # position in the fed stream: first voiced sample (start) / end of speech (end)


def level_db(pcm: np.ndarray) -> float:
    """RMS level of int16 samples in dBFS."""
    if pcm.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(pcm.astype(np.float64)))))
    return 20.0 * np.log10(max(rms, 1e-3) / 32768.0)


class EnergyVAD:
    """Feed int16 chunks of any size; get `VadEvent`s back as turns start and end."""

    def __init__(self, sample_rate: int, config: VadConfig | None = None) -> None:
        self.config = config or VadConfig()
        self.sample_rate = sample_rate
        self._frame = max(1, sample_rate * self.config.frame_ms // 1000)
        self._start_frames = max(1, -(-self.config.start_ms // self.config.frame_ms))
        self._end_frames = max(1, -(-self.config.end_ms // self.config.frame_ms))
        self._pending = np.zeros(0, dtype=np.int16)
        self._pos = 0                 # samples consumed into whole frames
        self.speaking = False
        self._voiced_run = 0
        self._silent_run = 0
        self._run_start = 0
        self._last_voiced_end = 0

    @property
    def position(self) -> int:
        return self._pos

    def feed(self, pcm: np.ndarray) -> list[VadEvent]:
        data = np.concatenate([self._pending, pcm]) if self._pending.size else pcm
        n = data.size // self._frame
        events: list[VadEvent] = []
        for i in range(n):
            event = self._step(data[i * self._frame:(i + 1) * self._frame])
            if event is not None:
                events.append(event)
        self._pending = data[n * self._frame:].copy()
        return events

    def _step(self, frame: np.ndarray) -> VadEvent | None:
        db = level_db(frame)
        start = self._pos
        self._pos += frame.size
        cfg = self.config
        if not self.speaking:
            if db >= cfg.start_db:
                if self._voiced_run == 0:
                    self._run_start = start
                self._voiced_run += 1
                if self._voiced_run >= self._start_frames:
                    self.speaking = True
                    self._silent_run = 0
                    self._last_voiced_end = self._pos
                    return VadEvent("start", self._run_start)
            else:
                self._voiced_run = 0
            return None
        if db >= cfg.stop_db:
            self._silent_run = 0
            self._last_voiced_end = self._pos
            return None
        self._silent_run += 1
        if self._silent_run >= self._end_frames:
            self.speaking = False
            self._voiced_run = 0
            return VadEvent("end", self._last_voiced_end)
        return None
