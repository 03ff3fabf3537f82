"""A real photograph through the whole photo path: scikit-image's astronaut (NASA, public
domain), a smiling face that shows its upper teeth. Speaking must keep those teeth, open the
jaw below them by a conversational amount and paint a mouth interior that is not a black hole."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from facecast.render import Avatar, open_render_session, prepare_avatar
from tests.render.speech import silence, vowel
from tests.render.test_session import run

SIZE = 512
K = 10  # a frame well inside the vowel


@pytest.fixture(scope="module")
def astronaut() -> Avatar:
    data = pytest.importorskip("skimage.data")
    ok, buf = cv2.imencode(".png", cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return prepare_avatar(buf.tobytes(), name="astronaut").avatar


@pytest.fixture(scope="module")
def frames(astronaut: Avatar) -> tuple[np.ndarray, np.ndarray]:
    closed = run(open_render_session(astronaut, "default", idle=False, seed=0), silence(0.6))[K]
    # a loud open "ah" (F1 750 Hz, F2 1250 Hz)
    ah = run(open_render_session(astronaut, "default", idle=False, seed=0), vowel(750, 1250, 0.6))[K]
    return closed, ah


def tooth_coloured(rgb: np.ndarray, min_lightness: float = 75.0) -> np.ndarray:
    """Light and unsaturated in CIELAB (teeth), unlike lips, skin, tongue or a mouth cavity."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2Lab).astype(np.float32)
    return (lab[..., 0] * 100 / 255 > min_lightness) & (lab[..., 1] - 128 <= 6)


def jaw_drop(closed: np.ndarray, opened: np.ndarray, cx: float, cy: float, mw: float) -> int:
    """How far the lower lip moved down at the mouth's centre: the shift that best matches the
    closed frame's lower lip (a strip of central columns) in the open frame."""
    xs = slice(int(cx - 0.12 * mw), int(cx + 0.12 * mw))
    top, bot = int(cy + 0.1 * mw), int(cy + 0.35 * mw)
    ref = closed[top:bot, xs].astype(np.float32)
    errs = [float(np.abs(opened[top + d:bot + d, xs].astype(np.float32) - ref).mean())
            for d in range(int(0.7 * mw))]
    return int(np.argmin(errs))


def test_the_photo_keeps_its_teeth_and_opens_like_speech(astronaut: Avatar,
                                                          frames: tuple[np.ndarray, np.ndarray]) -> None:
    closed, ah = frames
    g = astronaut.geometry.transformed(SIZE / astronaut.size)
    cx, cy = g.mouth_center
    mw = g.mouth_width
    # the astronaut smiles with her upper teeth showing at rest
    band = (slice(int(cy - 0.12 * mw), int(cy + 0.1 * mw)), slice(int(cx - 0.25 * mw), int(cx + 0.25 * mw)))
    teeth_closed = int(tooth_coloured(closed[band]).sum())
    assert teeth_closed > 0.02 * mw * mw
    # speaking keeps them where they were (they belong to the upper jaw)
    teeth_open = int(tooth_coloured(ah[band]).sum())
    assert teeth_open > 0.8 * teeth_closed, (teeth_open, teeth_closed)
    # a conversational opening, not a shout: the jaw drop is a fraction of the mouth width
    drop = jaw_drop(closed, ah, cx, cy, mw)
    assert 0.12 * mw < drop < 0.32 * mw, drop / mw
    # the opening shows tongue and lower teeth; the dark cavity is only part of it
    lo_edge = int(cy + 0.1 * mw)  # below the upper teeth: what the opening added
    gap = ah[lo_edge:lo_edge + drop, int(cx - 0.25 * mw):int(cx + 0.25 * mw)]
    lum = gap.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    dark = float(np.mean(lum < 70))
    print(f"teeth kept {teeth_open}/{teeth_closed}, jaw drop {drop / mw:.3f} mw, dark {dark:.2f}, "
          f"lower teeth {tooth_coloured(gap, 60.0).mean():.3f}")
    assert dark < 0.6, dark
    # lower teeth (in the lower lip's shadow, so a little less light) appear as the jaw opens
    assert tooth_coloured(gap, 60.0).mean() > 0.05


def test_only_the_mouth_region_moves(astronaut: Avatar, frames: tuple[np.ndarray, np.ndarray]) -> None:
    closed, ah = frames
    g = astronaut.geometry.transformed(SIZE / astronaut.size)
    x0, y0, x1, y1 = g.face_box
    fw, fh = x1 - x0, y1 - y0
    diff = np.abs(ah.astype(int) - closed.astype(int)).max(axis=2)
    ys, xs = np.nonzero(diff > 8)
    assert len(ys) > 400, "the mouth visibly opens"
    eyes_y = 0.5 * (g.eye_center("r")[1] + g.eye_center("l")[1])
    top = eyes_y + 0.3 * (g.mouth_center[1] - eyes_y)  # below the eyes
    box = np.zeros_like(diff, bool)
    box[int(top):int(y1 + 0.2 * fh), int(x0 - 0.08 * fw):int(x1 + 0.08 * fw)] = True
    assert diff[:int(top)].max() <= 8, "the eyes stay still"
    # outside the mouth and jaw only the odd hair or collar pixel shifts by a fraction of a pixel
    assert (diff[~box] > 8).sum() < 0.002 * len(ys) and diff[~box].max() <= 16


def test_a_closed_mouth_at_rest_is_the_photo(astronaut: Avatar, frames: tuple[np.ndarray, np.ndarray]) -> None:
    closed, _ = frames
    src = cv2.resize(astronaut.image, (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    g = astronaut.geometry.transformed(SIZE / astronaut.size)
    cx, cy = g.mouth_center.astype(int)
    r = int(0.6 * g.mouth_width)
    d = np.abs(closed[cy - r:cy + r, cx - r:cx + r].astype(int) - src[cy - r:cy + r, cx - r:cx + r].astype(int))
    assert d.mean() < 3, "silence shows the portrait's own mouth, nothing painted over it"
