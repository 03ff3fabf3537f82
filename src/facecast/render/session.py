"""Render sessions: the `RenderSession` protocol and the `warp2d` implementation.

A session is synchronous and owned by one worker thread. Each `render()` call is one video
frame on the audio sample clock: frame n shows the 960 samples [960 n, 960 n + 960) and may
peek at the samples that follow (lookahead) to move the mouth slightly ahead of the sound.
"""

from __future__ import annotations

import logging
import math
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from facecast.render.avatar import Avatar
from facecast.render.geometry import FaceGeometry
from facecast.render.idle import IdleMotion
from facecast.render.lipsync import LipSyncAnalyzer, MouthFrame
from facecast.render.mouth import MouthPainter
from facecast.render.presets import SAMPLES_PER_FRAME, RenderPreset, resolve_preset
from facecast.render.teeth import find_upper_teeth
from facecast.render.warp2d import FIELDS, WarpRig

logger = logging.getLogger(__name__)

BACKGROUNDS = ("default", "transparent")
_F = {name: i for i, name in enumerate(FIELDS)}


@runtime_checkable
class RenderSession(Protocol):
    """One live session's renderer (synchronous; call it from a worker thread)."""

    preset: RenderPreset
    lookahead_frames: int

    def render(self, pcm: np.ndarray, lookahead: np.ndarray) -> np.ndarray: ...

    def reset(self) -> None: ...


def _fit(avatar: Avatar, width: int, height: int) -> tuple[np.ndarray, np.ndarray, FaceGeometry]:
    """Scale the square portrait to cover width x height (centre crop)."""
    s = avatar.size
    scale = max(width, height) / s
    size = round(s * scale)
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    img = cv2.resize(avatar.image, (size, size), interpolation=interp)
    alpha = cv2.resize(avatar.alpha, (size, size), interpolation=interp)
    ox, oy = (size - width) // 2, (size - height) // 2
    img = np.ascontiguousarray(img[oy:oy + height, ox:ox + width])
    alpha = np.ascontiguousarray(alpha[oy:oy + height, ox:ox + width])
    geom = avatar.geometry.transformed(size / s, (-ox, -oy))
    return img, alpha, geom


def _lip_colour(img: np.ndarray, geom: FaceGeometry) -> tuple[np.ndarray, float]:
    mask = np.zeros(img.shape[:2], np.uint8)
    poly = np.concatenate([geom["lip_outer_upper"], geom["lip_outer_lower"][::-1]])
    cv2.fillPoly(mask, [np.round(poly).astype(np.int32)], 255)
    lips = img[mask > 0].reshape(-1, 3).astype(np.float32) / 255.0
    lip = np.median(lips, axis=0) if len(lips) else np.array([0.75, 0.4, 0.4], np.float32)
    x0, y0, x1, y1 = (int(v) for v in geom.face_box)
    face = img[max(y0, 0):max(y1, 1), max(x0, 0):max(x1, 1)].reshape(-1, 3).astype(np.float32) / 255.0
    lum = float(np.median(face @ np.array([0.299, 0.587, 0.114], np.float32))) if len(face) else 0.7
    return lip.astype(np.float32), lum


class Warp2DSession:
    """The CPU `warp2d` renderer for one avatar, preset and background."""

    def __init__(self, avatar: Avatar, preset: RenderPreset, background: str = "default",
                 seed: int = 0, idle: bool = True) -> None:
        if background not in BACKGROUNDS:
            raise ValueError(f"unknown background {background!r}; choose one of {list(BACKGROUNDS)}")
        self.preset = preset
        self.background = background
        self.lookahead_frames = LipSyncAnalyzer.lookahead_frames
        w, h = preset.width, preset.height
        img, alpha, geom = _fit(avatar, w, h)
        # always warp 4 channels: cv2.remap is ~2.5x faster on RGBA than on RGB
        a = alpha if background == "transparent" else np.full_like(alpha, 255)
        self._src = np.ascontiguousarray(np.dstack([img, a]))
        self._rgba = background == "transparent"
        # a photo that shows its upper teeth keeps them: the mouth opens just below them
        teeth = find_upper_teeth(img, geom)
        seam = teeth.seam if teeth is not None else None
        self._rig = WarpRig(geom, w, h, seam=seam)
        self._px = w / 512.0  # idle motion amplitudes are specified at 512 px
        lip, lum = _lip_colour(img, geom)
        source_open = seam is not None or geom.mouth_gap > 0.06 * geom.mouth_width
        self._painter = MouthPainter(self._rig.mw, lip, lum, synth_upper_teeth=not source_open,
                                     open_ref=self._rig.open_ref,
                                     teeth_rgb=teeth.rgb if teeth is not None else None)
        if seam is not None:
            up_pts = lo_pts = seam
        elif source_open:  # an open mouth without visible upper teeth: open at the lip midline
            up_pts = lo_pts = 0.5 * (geom["lip_inner_upper"] + geom["lip_inner_lower"])
        else:
            up_pts, lo_pts = geom["lip_inner_upper"], geom["lip_inner_lower"]
        self._up_pts, self._lo_pts = up_pts.astype(np.float32), lo_pts.astype(np.float32)
        self._up_basis = self._rig.point_basis(up_pts, side=-1.0)
        self._lo_basis = self._rig.point_basis(lo_pts, side=1.0)
        self._idle_on = idle
        self._seed = seed
        self._analyzer = LipSyncAnalyzer()
        self._idle = IdleMotion(seed)
        self._n = 0
        self._pos = 0  # absolute sample index the analyzer has been fed up to
        self._frames: dict[int, MouthFrame] = {}
        self._shown = np.zeros(4)  # open, spread, round, fric as displayed
        self._ease = 0
        self.last_mouth: MouthFrame | None = None

    @property
    def frame_index(self) -> int:
        """Index of the next frame `render()` produces."""
        return self._n

    def reset(self) -> None:
        """Barge-in: drop the analyzer's audio and ease the mouth closed over a few frames."""
        self._analyzer.reset(start_frame=self._n)
        self._pos = self._n * SAMPLES_PER_FRAME
        self._frames.clear()
        self._ease = 5

    def _mouth(self, pcm: np.ndarray, lookahead: np.ndarray) -> MouthFrame:
        n = self._n
        start = n * SAMPLES_PER_FRAME
        if self._pos < start:  # caller skipped ahead: restart the stream here
            self._analyzer.reset(start_frame=n)
            self._pos = start
            self._frames.clear()
        data = np.concatenate([pcm, lookahead]) if len(lookahead) else pcm
        fresh = data[self._pos - start:]
        if fresh.size:
            for f in self._analyzer.push(fresh):
                self._frames[f.index] = f
            self._pos += fresh.size
        for k in [k for k in self._frames if k < n]:
            del self._frames[k]
        frame = self._frames.get(n)
        if frame is None:
            frame = self._analyzer.preview(n)
        return frame

    def render(self, pcm: np.ndarray, lookahead: np.ndarray | None = None) -> np.ndarray:
        pcm = np.asarray(pcm, dtype=np.int16).reshape(-1)
        if pcm.size != SAMPLES_PER_FRAME:
            raise ValueError(f"render() needs exactly {SAMPLES_PER_FRAME} samples, got {pcm.size}")
        la = np.asarray(lookahead if lookahead is not None else (), dtype=np.int16).reshape(-1)
        la = la[: self.lookahead_frames * SAMPLES_PER_FRAME]
        mouth = self._mouth(pcm, la)
        self.last_mouth = mouth
        coeffs = self._coefficients(mouth)
        bmap = self._rig.backward_map(coeffs)
        out = cv2.remap(self._src, bmap, None, cv2.INTER_LINEAR,  # type: ignore[call-overload]
                        borderMode=cv2.BORDER_REPLICATE)
        up = self._up_pts + np.einsum("f,fpk->pk", coeffs, self._up_basis)
        lo = self._lo_pts + np.einsum("f,fpk->pk", coeffs, self._lo_basis)
        self._painter.paint(out, up, lo)
        self._n += 1
        return out if self._rgba else cv2.cvtColor(out, cv2.COLOR_RGBA2RGB)

    def _coefficients(self, m: MouthFrame) -> np.ndarray:
        target = np.array([m.open, m.spread, m.round, m.fric])
        if self._ease > 0:  # after a barge-in, glide instead of snapping shut
            self._shown += 0.45 * (target - self._shown)
            self._ease -= 1
        else:
            self._shown = target
        op, sp, rd, fr = (float(v) for v in self._shown)
        c = np.zeros(len(FIELDS), np.float32)
        c[_F["jaw"]] = min(op + 0.1 * fr + 0.05 * rd * op, 1.1)
        c[_F["lip_h"]] = 0.28 * sp - 0.45 * rd - 0.08 * op
        c[_F["smile"]] = 0.04 + 0.08 * sp
        c[_F["pucker"]] = 0.06 * rd
        loud = max(0.0, min(1.0, (m.energy_db + 45.0) / 30.0))
        if self._idle_on:
            mo = self._idle.step(self._n, loud)
            px = self._px
            c[_F["blink_r"]] = c[_F["blink_l"]] = mo.blink
            c[_F["brow"]] = mo.brow
            c[_F["head_x"]] = mo.head_x * px
            c[_F["head_y"]] = mo.head_y * px
            c[_F["head_c"]] = math.cos(mo.roll) - 1.0
            c[_F["head_s"]] = math.sin(mo.roll)
            c[_F["breath"]] = 1.5 * mo.breath * px
        return c


def open_render_session(avatar: Avatar, preset: str | RenderPreset = "default", *,
                        background: str = "default", seed: int = 0, idle: bool = True) -> RenderSession:
    """Open a `warp2d` session. `idle=False` freezes blinks and head motion (tests, stills)."""
    p = resolve_preset(preset)
    session = Warp2DSession(avatar, p, background=background, seed=seed, idle=idle)
    logger.debug("opened warp2d session %dx%d background=%s seed=%d", p.width, p.height, background, seed)
    return session
