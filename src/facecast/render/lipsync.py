"""Streaming DSP lip-sync analysis: 24 kHz speech in, one `MouthFrame` per 40 ms video frame.

Per 10 ms hop (25 ms window) we measure loudness, zero-crossing rate, the high-band energy share
and two formants (LPC on a 12 kHz copy). Every 4 hops make a frame: loudness through a peak
tracker (AGC), vowel colour from speaker-normalised formants, lip closure from energy dips and
nasal murmur, fricatives from the high band. Frame n is emitted once the audio up to the end of
frame n+1 (plus half a window) has arrived, so the mouth can anticipate the next frame: the
analyzer looks ahead `LOOKAHEAD_SAMPLES` samples.

The analysis is a pure function of the sample stream: any chunking gives identical frames.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.signal import fftconvolve, firwin

from facecast.render.presets import SAMPLE_RATE, SAMPLES_PER_FRAME

logger = logging.getLogger(__name__)

HOP = 240
"""10 ms analysis hop at 24 kHz."""
WIN = 600
"""25 ms analysis window."""
HOPS_PER_FRAME = SAMPLES_PER_FRAME // HOP
_PRE = (WIN - HOP) // 2
"""Samples before a hop's start that its (centred) window needs (180)."""
LOOKAHEAD_SAMPLES = SAMPLES_PER_FRAME + _PRE
"""Audio after the end of frame n needed to emit frame n (1140 samples = 47.5 ms)."""
LOOKAHEAD_FRAMES = math.ceil(LOOKAHEAD_SAMPLES / SAMPLES_PER_FRAME)
VISEMES = ("sil", "PP", "FF", "SS", "AA", "E", "I", "O", "U")

# Vowel prototypes (F1, F2) in Hz for a reference adult male voice.
_VOWELS = {"AA": (750.0, 1250.0), "E": (550.0, 1850.0), "I": (330.0, 2300.0),
           "O": (520.0, 900.0), "U": (340.0, 1100.0)}
_PROTO = np.log(np.array(list(_VOWELS.values())))
# Reference speaker: mean log formants over running speech (espeak-ng en-us male, measured).
_REF_LOG_F1 = math.log(520.0)
_REF_LOG_F2 = math.log(1500.0)
_NORM_PRIOR = 40.0  # voiced hops of prior weight before the speaker estimate moves freely
_NORM_LIMIT = 0.3  # clamp the speaker factor to exp(+-0.3) = 0.74..1.35

_LPC_ORDER = 10
_FS12 = SAMPLE_RATE / 2
_LOWPASS = firwin(31, 5200.0, fs=SAMPLE_RATE)
_HAMMING = np.hamming(WIN // 2 - 1)
_HANN = np.hanning(WIN)
_FREQS = np.fft.rfftfreq(WIN, 1.0 / SAMPLE_RATE)
_HI = _FREQS >= 4000.0
_ABOVE_1K = _FREQS >= 1000.0
_FRAME_IDX = np.arange(HOPS_PER_FRAME)[:, None] * HOP + np.arange(WIN)[None, :]
_SILENCE_DB = -55.0  # absolute gate, dBFS
_AGC_RANGE_DB = 30.0
_AGC_RELEASE_DB = 0.12  # per frame (3 dB/s)
_CLOSURE_DIP_DB = 22.0


@dataclass(frozen=True)
class MouthFrame:
    """Mouth parameters for one 40 ms video frame; all shape values are in 0..1."""

    index: int
    open: float
    spread: float
    round: float
    closure: float
    fric: float
    visemes: dict[str, float] = field(default_factory=dict)
    energy_db: float = -120.0
    f1: float = float("nan")
    f2: float = float("nan")

    @staticmethod
    def closed(index: int) -> MouthFrame:
        return MouthFrame(index, 0.0, 0.0, 0.0, 1.0, 0.0, {"sil": 1.0})


@dataclass
class _Raw:
    """Un-smoothed per-frame targets."""

    open: float
    spread: float
    round: float
    closure: float
    fric: float
    visemes: dict[str, float]
    energy_db: float
    f1: float
    f2: float


def _levinson(r: np.ndarray, order: int) -> np.ndarray:
    """Batched Levinson-Durbin: r (n, order+1) autocorrelations -> a (n, order+1), a[:,0] = 1."""
    n = r.shape[0]
    a = np.zeros((n, order + 1))
    a[:, 0] = 1.0
    err = r[:, 0].copy()
    for i in range(1, order + 1):
        acc = r[:, i] + np.einsum("nj,nj->n", a[:, 1:i], r[:, i - 1:0:-1]) if i > 1 else r[:, 1].copy()
        k = -acc / np.maximum(err, 1e-12)
        prev = a[:, 1:i].copy()
        a[:, 1:i] = prev + k[:, None] * prev[:, ::-1]
        a[:, i] = k
        err = err * (1.0 - k * k)
    return a


def _formants(win: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """F1, F2 in Hz (NaN when not found) for windows (n, WIN)."""
    x12 = fftconvolve(win, _LOWPASS[None, :], mode="same", axes=1)[:, ::2]
    x = (x12[:, 1:] - 0.63 * x12[:, :-1]) * _HAMMING
    m = x.shape[1]
    r = np.stack([np.einsum("nj,nj->n", x[:, k:], x[:, : m - k]) for k in range(_LPC_ORDER + 1)], 1)
    r[:, 0] *= 1.0 + 1e-9  # espeak-clean speech: LPC is sensitive to white-noise correction
    a = _levinson(r, _LPC_ORDER)
    comp = np.zeros((a.shape[0], _LPC_ORDER, _LPC_ORDER))
    comp[:, 0, :] = -a[:, 1:]
    comp[:, np.arange(1, _LPC_ORDER), np.arange(_LPC_ORDER - 1)] = 1.0
    z = np.linalg.eigvals(comp)
    freq = np.angle(z) * _FS12 / (2 * np.pi)
    bw = -_FS12 / np.pi * np.log(np.maximum(np.abs(z), 1e-9))
    ok = (z.imag > 0.01) & (freq > 200.0) & (freq < 4000.0) & (bw < 600.0)
    f = np.sort(np.where(ok, freq, np.inf), axis=1)
    f1 = np.where(np.isfinite(f[:, 0]), f[:, 0], np.nan)
    f2 = np.where(np.isfinite(f[:, 1]), f[:, 1], np.nan)
    return f1, f2


class LipSyncAnalyzer:
    """Streaming analyzer. `push()` any number of int16 samples; get the frames now complete."""

    lookahead_samples: int = LOOKAHEAD_SAMPLES
    lookahead_frames: int = LOOKAHEAD_FRAMES

    def __init__(self, start_frame: int = 0) -> None:
        self._mu1 = _REF_LOG_F1
        self._mu2 = _REF_LOG_F2
        self._n_voiced = 0
        self._peak_db = -25.0
        self.reset(start_frame)

    # ---------------------------------------------------------------- public API
    def reset(self, start_frame: int = 0, *, full: bool = False) -> None:
        """Drop buffered audio and smoothing (barge-in). Speaker calibration survives unless
        `full`; the next pushed sample is the first sample of frame `start_frame`."""
        if full:
            self._mu1, self._mu2, self._n_voiced, self._peak_db = _REF_LOG_F1, _REF_LOG_F2, 0, -25.0
        self._buf = np.zeros(_PRE, dtype=np.float64)  # the stream starts after 180 zeros
        self._next_hop = 0
        self._hops: list[tuple[float, float, float, float, float, float]] = []
        self._raw: list[_Raw] = []
        self._prev_db = np.full(2, -120.0)
        self._frame = start_frame
        self._state = np.array([0.0, 0.0, 0.0, 1.0, 0.0])  # open, spread, round, closure, fric

    @property
    def next_frame(self) -> int:
        """Index of the next frame `push()` will emit."""
        return self._frame

    def push(self, pcm: np.ndarray) -> list[MouthFrame]:
        """Feed int16 (or float in -1..1) mono 24 kHz samples; return the frames completed."""
        x = np.asarray(pcm)
        if x.dtype == np.int16:
            x = x.astype(np.float64) / 32768.0
        else:
            x = x.astype(np.float64, copy=False)
        if x.ndim != 1:
            x = x.reshape(-1)
        self._buf = np.concatenate([self._buf, x]) if x.size else self._buf
        n_hops = (self._buf.size - WIN) // HOP + 1 if self._buf.size >= WIN else 0
        # analyse whole frames only, one frame (4 hops) per batch: batch composition then never
        # depends on the chunking, so results are bit-identical for any chunk size
        for _ in range(n_hops // HOPS_PER_FRAME):
            self._analyse_hops(self._buf[_FRAME_IDX])
            self._buf = self._buf[SAMPLES_PER_FRAME:]
            self._raw.append(self._frame_targets(self._hops))
            self._hops = []
        out: list[MouthFrame] = []
        while len(self._raw) >= 2:
            out.append(self._emit(self._raw[0], self._raw[1]))
            del self._raw[0]
        return out

    def preview(self, index: int | None = None) -> MouthFrame:
        """Frame `index` (default: the next one) as if the stream continued with silence after
        the samples pushed so far; leaves this analyzer untouched."""
        index = self._frame if index is None else index
        if index < self._frame:
            raise ValueError(f"frame {index} was already emitted")
        probe = copy.deepcopy(self)
        frames: list[MouthFrame] = []
        while not frames or frames[-1].index < index:
            frames += probe.push(np.zeros(SAMPLES_PER_FRAME, dtype=np.float64))
        return next(f for f in frames if f.index == index)

    # ---------------------------------------------------------------- internals
    def _analyse_hops(self, win: np.ndarray) -> None:
        rms = np.sqrt(np.mean(win * win, axis=1))
        db = 20.0 * np.log10(rms + 1e-9)
        zcr = np.mean(np.signbit(win[:, 1:]) != np.signbit(win[:, :-1]), axis=1)
        spec = np.abs(np.fft.rfft(win * _HANN, axis=1)) ** 2
        tot = spec.sum(axis=1) + 1e-12
        hi = spec[:, _HI].sum(axis=1) / tot
        above1k = spec[:, _ABOVE_1K].sum(axis=1) / tot
        f1 = np.full(win.shape[0], np.nan)
        f2 = np.full(win.shape[0], np.nan)
        voiced = (db > _SILENCE_DB) & (db > self._peak_db - 25.0) & (hi < 0.25)
        if voiced.any():
            f1[voiced], f2[voiced] = _formants(win[voiced])
        for i in range(win.shape[0]):
            self._hops.append((db[i], zcr[i], hi[i], above1k[i], f1[i], f2[i]))

    def _speaker_update(self, f1: float, f2: float) -> None:
        """Running log-mean of voiced formants (per-speaker normalisation)."""
        self._n_voiced += 1
        alpha = 1.0 / (self._n_voiced + _NORM_PRIOR) if self._n_voiced < 400 else 1.0 / 440.0
        self._mu1 += alpha * (math.log(f1) - self._mu1)
        self._mu2 += alpha * (math.log(f2) - self._mu2)

    def _scale(self) -> float:
        d = 0.3 * (self._mu1 - _REF_LOG_F1) + 0.7 * (self._mu2 - _REF_LOG_F2)
        return math.exp(-min(max(d, -_NORM_LIMIT), _NORM_LIMIT))

    def _frame_targets(self, hops: list[tuple[float, float, float, float, float, float]]) -> _Raw:
        h = np.array(hops)
        db, zcr, hi, above1k, f1h, f2h = h.T
        db_max = float(db.max())
        # AGC: fast attack, slow release peak tracker on the loudest hop
        self._peak_db = max(db_max, self._peak_db - _AGC_RELEASE_DB, -40.0)
        if db_max < _SILENCE_DB:
            self._prev_db = db[-2:].copy()
            return _Raw(0.0, 0.0, 0.0, 1.0, 0.0, {"sil": 1.0}, db_max, math.nan, math.nan)
        floor = self._peak_db - _AGC_RANGE_DB
        loud = min(max((db_max - floor) / _AGC_RANGE_DB, 0.0), 1.0)
        ok = np.isfinite(f1h) & np.isfinite(f2h) & (f1h < 1200.0)
        for a, b in zip(f1h[ok], f2h[ok], strict=True):
            self._speaker_update(float(a), float(b))
        k = self._scale()
        vis = dict.fromkeys(VISEMES, 0.0)
        loud_hops = db > self._peak_db - 18.0
        fric_raw = float(np.max(np.where(loud_hops | (db > -45.0), hi * np.clip(zcr / 0.25, 0, 1), 0.0)))
        fric = min(max((fric_raw - 0.15) / 0.45, 0.0), 1.0)
        f1 = f2 = math.nan
        if ok.any():
            f1 = float(np.median(f1h[ok])) * k
            f2 = float(np.median(f2h[ok])) * k
            d = (np.log([f1, f2])[None, :] - _PROTO) / np.array([0.22, 0.18])
            w = np.exp(-0.5 * np.sum(d * d, axis=1))
            w = w / (w.sum() + 1e-9)
            vowel = dict(zip(_VOWELS, w.tolist(), strict=True))
            open_ = loud**0.6 * min(max((f1 - 250.0) / 550.0, 0.15), 1.0)
            spread = min(max((f2 - 1500.0) / 900.0, 0.0), 1.0)
            rnd = min(max((1300.0 - f2) / 500.0, 0.0), 1.0)
            spread = max(spread, 0.8 * (vowel["I"] + 0.6 * vowel["E"]))
            rnd = max(rnd, 0.8 * (vowel["O"] + vowel["U"]))
            voicing = float(ok.mean())
        else:
            vowel = dict.fromkeys(_VOWELS, 0.0)
            open_ = 0.3 * loud
            spread = rnd = 0.0
            voicing = 0.0
        # lip closure: an energy dip inside the frame (stop closure), or a nasal murmur
        closure = 0.0
        ctx = np.concatenate([self._prev_db, db])
        i = int(np.argmin(ctx))
        flanked = i > 0 and ctx[:i].max() > ctx[i] + 12.0 and ctx[i:].max() > ctx[i] + 12.0
        if flanked and ctx[i] < self._peak_db - _CLOSURE_DIP_DB:
            closure = min(1.0, (self._peak_db - _CLOSURE_DIP_DB - ctx[i]) / 6.0 + 0.6)
        self._prev_db = db[-2:].copy()
        murmur = (db_max < self._peak_db - 6.0) & (float(np.median(above1k)) < 0.02) & (voicing > 0.5)
        if murmur:
            closure = max(closure, 0.7)
        open_ *= 1.0 - closure
        # viseme weights: sil / PP / fricatives / vowels, summing to 1
        sil = 1.0 - loud
        speech = 1.0 - sil
        pp = speech * closure
        fr = speech * (1.0 - closure) * fric
        vw = speech * (1.0 - closure) * (1.0 - fric)
        vis["sil"] = sil
        vis["PP"] = pp
        ss_share = min(max((float(hi.max()) - 0.45) / 0.3, 0.0), 1.0)
        vis["SS"] = fr * ss_share
        vis["FF"] = fr * (1.0 - ss_share)
        if voicing > 0.0:
            for name, wv in vowel.items():
                vis[name] = vw * wv
        else:
            vis["sil"] += vw
        return _Raw(open_, spread * loud, rnd * loud, closure, fric, vis, db_max, f1, f2)

    def _emit(self, cur: _Raw, nxt: _Raw) -> MouthFrame:
        """Blend with the next frame (anticipation), then smooth (fast attack, slower release)."""
        ant = 0.3
        target = np.array([
            (1 - ant) * cur.open + ant * nxt.open * (1.0 - 0.5 * nxt.closure),
            (1 - ant) * cur.spread + ant * nxt.spread,
            (1 - ant) * cur.round + ant * nxt.round,
            max(cur.closure, 0.5 * nxt.closure),
            cur.fric,
        ])
        up = target > self._state
        rate = np.where(up, 0.75, 0.6)
        rate[3] = 0.85  # closures are quick
        self._state = self._state + rate * (target - self._state)
        o, s, r, c, f = (float(v) for v in self._state)
        o *= 1.0 - 0.9 * c  # `open` is the effective lip opening: closures win
        frame = MouthFrame(self._frame, o, s, r, c, f, cur.visemes, cur.energy_db, cur.f1, cur.f2)
        self._frame += 1
        return frame
