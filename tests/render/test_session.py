"""warp2d render sessions: frames, determinism, mouth region, idle life, barge-in."""

from __future__ import annotations

import numpy as np
import pytest

from facecast.render import (
    PRESETS,
    SAMPLES_PER_FRAME,
    RenderPreset,
    RenderSession,
    builtin_avatar,
    open_render_session,
)
from tests.render.speech import espeak, frames_of, silence, vowel


def run(session: RenderSession, pcm: np.ndarray, lookahead: bool = True) -> list[np.ndarray]:
    pcm = frames_of(pcm)
    la = session.lookahead_frames * SAMPLES_PER_FRAME
    out = []
    for i in range(len(pcm) // SAMPLES_PER_FRAME):
        a = i * SAMPLES_PER_FRAME
        ahead = pcm[a + SAMPLES_PER_FRAME:a + SAMPLES_PER_FRAME + la] if lookahead else pcm[:0]
        out.append(session.render(pcm[a:a + SAMPLES_PER_FRAME], ahead))
    return out


def mouth_box(size: int) -> tuple[int, int, int, int]:
    """Region around the mouth and jaw of the built-in avatar at `size` (x0, y0, x1, y1)."""
    g = builtin_avatar().geometry.transformed(size / builtin_avatar().size)
    x0, y0, x1, y1 = g.face_box
    fw, fh = x1 - x0, y1 - y0
    eyes_y = 0.5 * (g.eye_center("r")[1] + g.eye_center("l")[1])
    below_eyes = eyes_y + 0.4 * (g.mouth_center[1] - eyes_y)
    return int(x0 - 0.08 * fw), int(below_eyes), int(x1 + 0.08 * fw), int(y1 + 0.2 * fh)


def test_frame_format_for_each_preset_and_background() -> None:
    for name, p in PRESETS.items():
        s = open_render_session(builtin_avatar(), name)
        assert isinstance(s, RenderSession)
        assert s.preset == p and s.lookahead_frames >= 1
        f = s.render(np.zeros(SAMPLES_PER_FRAME, np.int16), np.zeros(0, np.int16))
        assert f.shape == (p.height, p.width, 3) and f.dtype == np.uint8
    s = open_render_session(builtin_avatar(), "small", background="transparent")
    f = s.render(np.zeros(SAMPLES_PER_FRAME, np.int16), np.zeros(0, np.int16))
    assert f.shape == (256, 256, 4)
    custom = open_render_session(builtin_avatar(), RenderPreset("wide", 320, 240))
    assert custom.render(np.zeros(SAMPLES_PER_FRAME, np.int16), np.zeros(0, np.int16)).shape == (240, 320, 3)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="preset"):
        open_render_session(builtin_avatar(), "huge")
    with pytest.raises(ValueError, match="background"):
        open_render_session(builtin_avatar(), background="green")
    s = open_render_session(builtin_avatar(), "small")
    with pytest.raises(ValueError, match="960"):
        s.render(np.zeros(100, np.int16), np.zeros(0, np.int16))


def test_same_seed_same_frames_other_seed_other_idle_motion() -> None:
    pcm = np.concatenate([vowel(750, 1250, 0.5), silence(1.5)])
    a = run(open_render_session(builtin_avatar(), "small", seed=5), pcm)
    b = run(open_render_session(builtin_avatar(), "small", seed=5), pcm)
    c = run(open_render_session(builtin_avatar(), "small", seed=6), pcm)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert any(not np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_open_mouth_changes_only_the_mouth_region() -> None:
    size = 512
    closed = run(open_render_session(builtin_avatar(), "default", idle=False), silence(0.6))
    speaking = open_render_session(builtin_avatar(), "default", idle=False)
    frames = run(speaking, vowel(750, 1250, 0.6))
    k = 8
    diff = np.abs(frames[k].astype(int) - closed[k].astype(int)).max(axis=2)
    ys, xs = np.nonzero(diff > 8)
    assert len(ys) > 400, "the mouth should visibly open"
    x0, y0, x1, y1 = mouth_box(size)
    assert xs.min() >= x0 and xs.max() <= x1 and ys.min() >= y0 and ys.max() <= y1
    # the opening shows a real interior: dark cavity and bright teeth, not a flat band
    g = builtin_avatar().geometry.transformed(size / builtin_avatar().size)
    cx, cy = g.mouth_center
    mw = g.mouth_width
    roi = frames[k][int(cy - 0.1 * mw):int(cy + 0.45 * mw), int(cx - 0.4 * mw):int(cx + 0.4 * mw)]
    lum = roi.astype(float) @ [0.299, 0.587, 0.114]
    assert lum.min() < 50, "a dark cavity"
    assert lum.max() > 200, "light teeth"
    assert lum.std() > 40


def test_no_lookahead_still_renders_and_follows_speech() -> None:
    pcm = vowel(750, 1250, 0.6)
    with_la = run(open_render_session(builtin_avatar(), "small", idle=False), pcm)
    without = run(open_render_session(builtin_avatar(), "small", idle=False), pcm, lookahead=False)
    ref = run(open_render_session(builtin_avatar(), "small", idle=False), silence(0.6))
    assert np.abs(without[8].astype(int) - ref[8].astype(int)).max() > 30
    assert np.abs(with_la[8].astype(int) - ref[8].astype(int)).max() > 30


def test_idle_life_blinks_and_moves_but_background_stays() -> None:
    s = open_render_session(builtin_avatar(), "small", seed=2)
    frames = run(s, silence(8.0))
    stack = np.stack(frames).astype(np.int16)
    g = builtin_avatar().geometry.transformed(256 / builtin_avatar().size)
    e = g.eye_center("r").astype(int)
    eye = stack[:, e[1] - 4:e[1] + 4, e[0] - 8:e[0] + 8].mean(axis=(1, 2, 3))
    assert eye.max() - eye.min() > 15, "a blink should darken/lighten the eye region"
    head = np.abs(stack[1:] - stack[:-1]).max(axis=(1, 2, 3))
    assert (head > 0).mean() > 0.9, "idle motion keeps the avatar alive"
    corner = stack[:, :12, :12]
    assert np.all(corner == corner[0]), "the background does not move"
    m = g.mouth_center.astype(int)
    mouth = stack[:, m[1] - 3:m[1] + 4, m[0] - 6:m[0] + 7]
    lum = mouth.mean(axis=3)
    assert lum.min() > 60, "silence keeps the mouth closed (no dark cavity)"


def test_reset_eases_the_mouth_closed() -> None:
    s = open_render_session(builtin_avatar(), "small", idle=False)
    pcm = frames_of(espeak("Hello there, how are you doing"))
    la = s.lookahead_frames * SAMPLES_PER_FRAME
    for i in range(20):
        a = i * SAMPLES_PER_FRAME
        s.render(pcm[a:a + SAMPLES_PER_FRAME], pcm[a + SAMPLES_PER_FRAME:a + SAMPLES_PER_FRAME + la])
    s.reset()
    ref = run(open_render_session(builtin_avatar(), "small", idle=False), silence(0.1))[-1]
    after = [s.render(np.zeros(SAMPLES_PER_FRAME, np.int16), np.zeros(0, np.int16)) for _ in range(10)]
    d = [int(np.abs(f.astype(int) - ref.astype(int)).max()) for f in after]
    assert d[-1] <= 2, d
    assert s.frame_index == 30


def test_transparent_background_uses_the_matte() -> None:
    s = open_render_session(builtin_avatar(), "small", background="transparent", idle=False)
    f = s.render(np.zeros(SAMPLES_PER_FRAME, np.int16), np.zeros(0, np.int16))
    a = f[..., 3]
    assert a[0, 0] == 0 and a[0, -1] == 0
    g = builtin_avatar().geometry.transformed(256 / builtin_avatar().size)
    cx, cy = g.mouth_center.astype(int)
    assert a[cy, cx] == 255 and a[-1, 128] == 255
