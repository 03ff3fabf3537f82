"""The streaming lip-sync analyzer on synthetic and espeak-ng speech."""

from __future__ import annotations

from collections import Counter
from dataclasses import astuple

import numpy as np
import pytest

from facecast.render import LOOKAHEAD_SAMPLES, SAMPLES_PER_FRAME, LipSyncAnalyzer, MouthFrame
from tests.render.speech import espeak, frames_of, silence, vowel


def analyse(pcm: np.ndarray, chunk: int | None = None) -> list[MouthFrame]:
    a = LipSyncAnalyzer()
    pcm = np.concatenate([frames_of(pcm), silence(0.2)])
    if chunk is None:
        return a.push(pcm)
    out: list[MouthFrame] = []
    for i in range(0, len(pcm), chunk):
        out += a.push(pcm[i:i + chunk])
    return out


def top(f: MouthFrame) -> str:
    return max(f.visemes, key=lambda k: f.visemes[k])


def voiced_tops(frames: list[MouthFrame]) -> Counter[str]:
    return Counter(top(f) for f in frames if top(f) not in ("sil", "PP"))


def test_silence_keeps_the_mouth_closed() -> None:
    frames = analyse(silence(2.0))
    assert len(frames) == 50 + 5 - 2 + 1 or len(frames) >= 50
    assert all(f.open < 0.01 and f.closure > 0.99 and top(f) == "sil" for f in frames)


def test_one_frame_per_40ms_with_documented_lookahead() -> None:
    a = LipSyncAnalyzer()
    n_frames = 10
    # frame n needs audio up to the end of frame n + LOOKAHEAD_SAMPLES
    assert a.push(silence(n_frames * SAMPLES_PER_FRAME / 24000)) != []
    b = LipSyncAnalyzer()
    got = b.push(np.zeros(SAMPLES_PER_FRAME + LOOKAHEAD_SAMPLES - 1, np.int16))
    assert got == []
    got = b.push(np.zeros(1, np.int16))
    assert [f.index for f in got] == [0]


@pytest.mark.parametrize(("f1", "f2", "expected", "shape"), [
    (750, 1250, "AA", "open"),
    (330, 2300, "I", "spread"),
    (520, 900, "O", "round"),
    (340, 1050, "U", "round"),
])
def test_synthetic_vowels_get_their_class(f1: float, f2: float, expected: str, shape: str) -> None:
    frames = analyse(vowel(f1, f2))
    tops = voiced_tops(frames)
    assert tops.most_common(1)[0][0] == expected, tops
    loud = [f for f in frames if top(f) == expected]
    mean = {k: float(np.mean([getattr(f, k) for f in loud])) for k in ("open", "spread", "round")}
    assert max(mean, key=lambda k: mean[k]) == shape, mean


def test_open_vowel_opens_wider_than_close_vowel() -> None:
    aa = max(f.open for f in analyse(vowel(750, 1250)))
    ii = max(f.open for f in analyse(vowel(300, 2300)))
    assert aa > 0.5 and aa > ii + 0.2


def test_gap_between_vowels_closes_the_lips() -> None:
    pcm = np.concatenate([vowel(750, 1250, 0.4), silence(0.12), vowel(750, 1250, 0.4)])
    frames = analyse(pcm)
    gap = frames[10:13]  # 0.40 .. 0.52 s (the last one may anticipate the next vowel)
    assert max(f.closure for f in gap) > 0.8
    assert min(f.open for f in gap) < 0.1, [(f.open, f.closure) for f in gap]
    assert max(f.open for f in frames[3:9]) > 0.5


def test_chunking_does_not_change_the_output() -> None:
    pcm = espeak("Bob bought a big map. Please sit!")
    ref = analyse(pcm, 240)
    assert [astuple(f) for f in analyse(pcm, 7200)] == [astuple(f) for f in ref]
    rng = np.random.default_rng(3)
    a = LipSyncAnalyzer()
    padded = np.concatenate([frames_of(pcm), silence(0.2)])
    out: list[MouthFrame] = []
    i = 0
    while i < len(padded):
        k = int(rng.integers(1, 3000))
        out += a.push(padded[i:i + k])
        i += k
    assert [astuple(f) for f in out] == [astuple(f) for f in ref]


@pytest.mark.parametrize("voice", ["en-us", "en-us+f3"])
def test_espeak_vowel_classes(voice: str) -> None:
    for word, expected in (("ah", "AA"), ("ee", "I"), ("oh", "O")):
        tops = voiced_tops(analyse(espeak(word, voice)))
        assert tops.most_common(1)[0][0] == expected, (voice, word, tops)


def test_espeak_bilabials_close_the_lips() -> None:
    frames = analyse(espeak("Bob, Bob, Bob."))
    closed = [f for f in frames[2:-8] if f.closure > 0.6]
    assert len(closed) >= 3
    assert max(f.open for f in frames) > 0.4


def test_fricative_is_detected() -> None:
    frames = analyse(espeak("sss sss"))
    assert max(f.fric for f in frames) > 0.6
    assert any(top(f) == "SS" for f in frames)


def test_speaker_normalisation_brings_a_female_voice_towards_the_reference() -> None:
    text = "The quick brown fox jumps over the lazy dog while we talk about the weather."
    a, b = LipSyncAnalyzer(), LipSyncAnalyzer()
    a.push(espeak(text, "en-us"))
    b.push(espeak(text, "en-us+f3"))
    # the female voice's formants run higher, so its correction factor is smaller
    assert b._scale() < a._scale()


def test_level_changes_are_absorbed_by_the_agc() -> None:
    pcm = espeak("Hello there, how are you doing today?")
    loud = analyse(pcm)
    quiet = analyse((pcm.astype(np.float32) * 0.1).astype(np.int16))
    lo = np.array([f.open for f in loud])
    qo = np.array([f.open for f in quiet])
    assert abs(lo.mean() - qo.mean()) < 0.08


def test_reset_restarts_the_stream() -> None:
    a = LipSyncAnalyzer()
    a.push(vowel(750, 1250, 0.5))
    a.reset(start_frame=100)
    frames = a.push(silence(0.4))
    assert frames[0].index == 100
    assert all(f.open < 0.01 for f in frames)


def test_preview_pads_with_silence_without_consuming_state() -> None:
    a = LipSyncAnalyzer()
    pcm = vowel(750, 1250, 0.3)
    a.push(pcm[:SAMPLES_PER_FRAME * 3])
    nxt = a.next_frame
    p1 = a.preview(nxt + 1)
    p2 = a.preview(nxt + 1)
    assert astuple(p1) == astuple(p2) and p1.index == nxt + 1
    assert a.next_frame == nxt
