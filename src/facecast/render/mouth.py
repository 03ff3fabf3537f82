"""Mouth interior: cavity, tongue, upper and lower teeth painted between the deformed lips.

Textures are synthesised once per avatar and output size, in mouth-local coordinates (x from
the mouth centre, rows measured from a lip line). Per frame each ROI column is mapped to the
textures by its distance below the upper lip (upper teeth hang from it) and above the lower lip
(tongue and lower teeth ride on the jaw), so the interior follows the lips' shape exactly.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_SHIFT = 4


def _teeth_strip(mw: float, upper: bool, ivory: np.ndarray, lower_shade: float = 0.72,
                 shadow: np.ndarray | None = None) -> np.ndarray:
    """RGBA float32 strip of teeth; row 0 is the lip line, x = 0 at the centre column.
    Shaded parts blend towards `shadow` (the mouth's warm dark), not towards grey."""
    width = int(np.ceil(1.5 * mw)) | 1
    height = max(4, int(np.ceil((0.24 if upper else 0.15) * mw)))
    xs = np.arange(width, dtype=np.float32) - width // 2
    ys = np.arange(height, dtype=np.float32)[:, None]
    # tooth widths from the centre outwards (fractions of mouth width), lengths likewise
    widths = [0.145, 0.115, 0.1, 0.09, 0.085, 0.08] if upper else [0.095, 0.09, 0.09, 0.085, 0.08, 0.08]
    lengths = [0.165, 0.145, 0.15, 0.13, 0.12, 0.11] if upper else [0.09, 0.09, 0.095, 0.085, 0.08, 0.08]
    edges = np.concatenate([[0.0], np.cumsum(widths)]) * mw
    rgba = np.zeros((height, width, 4), np.float32)
    ax = np.abs(xs)
    k = np.clip(np.searchsorted(edges, ax, side="right") - 1, 0, len(widths) - 1)
    left, right = edges[k], edges[k + 1]
    pos = (ax - left) / np.maximum(right - left, 1e-6)  # 0..1 across each tooth
    length = np.asarray(lengths)[k] * mw
    # rounded incisal edge: shorter at the tooth's sides
    tip = length * (1 - 0.18 * (2 * pos - 1) ** 4) - (0.35 * mw * 0.02 if not upper else 0.0)
    body = np.clip(tip[None, :] - ys + 0.5, 0, 1)
    gap = np.clip(np.minimum(pos, 1 - pos) * (right - left) / 0.9, 0, 1) ** 0.6
    rgba[..., 3] = body
    rgba[..., 3] *= (ax <= edges[-1])[None, :]
    # shading: round each tooth across, darker towards the mouth corners and the lip line
    across = (0.86 + 0.14 * np.sin(np.pi * np.clip(pos, 0, 1)) ** 0.5) * (0.8 + 0.2 * gap)
    side = 1 - 0.7 * np.clip(ax / (0.55 * mw), 0, 1) ** 2
    depth = 0.86 + 0.14 * np.clip(ys / (0.06 * mw), 0, 1)
    edge_tr = 1 - 0.12 * np.clip((ys - (tip[None, :] - 0.04 * mw)) / (0.04 * mw), 0, 1)
    shade = across[None, :] * side[None, :] * depth * edge_tr
    if not upper:
        shade = shade * lower_shade
    if shadow is None:
        rgba[..., :3] = np.clip(ivory[None, None, :] * shade[..., None], 0, 1)
    else:
        lit = np.clip(shade, 0, 1)[..., None]
        rgba[..., :3] = np.clip(ivory[None, None, :] * lit + shadow[None, None, :] * (1 - lit), 0, 1)
    return rgba


def _tongue_strip(mw: float, tongue_rgb: np.ndarray) -> np.ndarray:
    """RGBA strip of the tongue; row 0 is the lower lip line, rows go up into the mouth."""
    width = int(np.ceil(1.5 * mw)) | 1
    height = max(4, int(np.ceil(0.4 * mw)))
    xs = (np.arange(width, dtype=np.float32) - width // 2)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    rx, top = 0.34 * mw, 0.17 * mw
    # tongue surface: an arch whose top sits `top` above the lip line at the centre
    surf = top * np.sqrt(np.clip(1 - (xs / rx) ** 2, 0, 1))
    inside = np.clip(surf - ys + 0.5, 0, 1)
    rgba = np.zeros((height, width, 4), np.float32)
    rgba[..., 3] = inside
    hl = np.exp(-(((surf - ys) / (0.05 * mw)) ** 2)) * np.exp(-((xs / (0.22 * mw)) ** 2))
    groove = np.exp(-((xs / (0.025 * mw)) ** 2)) * np.clip(1 - (surf - ys) / (0.2 * mw), 0, 1)
    shade = (0.62 + 0.38 * np.clip(1 - (surf - ys) / (0.2 * mw), 0, 1)) * (1 - 0.25 * groove)
    shade = shade * (1 - 0.35 * np.clip(np.abs(xs) / rx, 0, 1) ** 2)
    col = tongue_rgb[None, None, :] * shade[..., None] + 0.22 * hl[..., None]
    rgba[..., :3] = np.clip(col, 0, 1)
    return rgba


class MouthPainter:
    """Paints the mouth interior for one avatar at one output size."""

    def __init__(self, mouth_width: float, lip_rgb: np.ndarray, face_lum: float,
                 synth_upper_teeth: bool = True, open_ref: float | None = None,
                 teeth_rgb: np.ndarray | None = None) -> None:
        """`open_ref`: the jaw's scale (default the mouth width); the gaps at which tongue and
        lower teeth show scale with it. `teeth_rgb`: the colour of the photo's own upper teeth,
        which are kept; the synthesised lower teeth then match them, are sized for a relaxed
        mouth (a smile widens the lips, not the teeth) and show from smaller openings."""
        self.mw = float(mouth_width)
        self.ref = self.mw if open_ref is None else float(open_ref)
        lip = np.asarray(lip_rgb, np.float32)
        bright = float(np.clip(face_lum / 0.65, 0.85, 1.0))
        ivory = np.array([0.98, 0.94, 0.86], np.float32) * bright
        self.cavity = (lip * np.array([0.42, 0.22, 0.24], np.float32) + 0.03).astype(np.float32)
        shadow = np.clip(self.cavity * 1.6, 0, 1).astype(np.float32)
        self.tongue_rgb = np.clip(lip * np.array([0.95, 0.55, 0.58]) + 0.02, 0, 1).astype(np.float32)
        self.upper = (_teeth_strip(self.mw, True, ivory, shadow=shadow)
                      if synth_upper_teeth and teeth_rgb is None else None)
        if teeth_rgb is None:
            self.lower_hidden = 0.03 * self.mw  # behind the lower lip
            self.lower = _teeth_strip(self.mw, False, ivory * 0.92, shadow=shadow)
            self.lower_show = (0.26, 0.12)  # (starts, grows over) as gap / open_ref
        else:
            self.lower_hidden = 0.01 * self.ref
            tint = np.clip(np.asarray(teeth_rgb, np.float32) / 0.95, 0, 1)
            # lit from the front like the photo's teeth (the lip shadow still falls on them)
            self.lower = _teeth_strip(self.ref, False, tint, lower_shade=1.25)
            self.lower_show = (0.1, 0.16)
        self.tongue = _tongue_strip(self.mw, self.tongue_rgb)

    def paint(self, frame: np.ndarray, upper: np.ndarray, lower: np.ndarray) -> None:
        """Paint in place between `upper` and `lower` inner-lip polylines (left to right)."""
        h, w = frame.shape[:2]
        poly = np.concatenate([upper, lower[::-1]])
        x0 = max(int(np.floor(poly[:, 0].min())) - 1, 0)
        x1 = min(int(np.ceil(poly[:, 0].max())) + 2, w)
        y0 = max(int(np.floor(poly[:, 1].min())) - 1, 0)
        y1 = min(int(np.ceil(poly[:, 1].max())) + 2, h)
        if x1 - x0 < 2 or y1 - y0 < 2 or float(np.max(lower[:, 1] - upper[:, 1])) < 0.6:
            return
        rw, rh = x1 - x0, y1 - y0
        mask = np.zeros((rh, rw), np.uint8)
        local = np.round((poly - [x0, y0]) * (1 << _SHIFT)).astype(np.int32)
        cv2.fillPoly(mask, [local], 255, cv2.LINE_AA, shift=_SHIFT)
        xs = np.arange(x0, x1, dtype=np.float32)
        ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        ou, ol = np.argsort(upper[:, 0]), np.argsort(lower[:, 0])
        yu = np.interp(xs, upper[ou, 0], upper[ou, 1]).astype(np.float32)[None, :]
        yl = np.interp(xs, lower[ol, 0], lower[ol, 1]).astype(np.float32)[None, :]
        gap = np.maximum(yl - yu, 1e-3)
        rel_u = ys - yu
        rel_l = yl - ys
        cx = float(0.5 * (upper[len(upper) // 2, 0] + lower[len(lower) // 2, 0]))
        corner = np.clip(1 - ((xs - cx) / (0.5 * self.mw)) ** 2, 0, 1)[None, :]
        t = np.clip(rel_u / gap, 0, 1)
        depth = 0.55 + 0.45 * np.abs(2 * t - 1) ** 1.5
        img = self.cavity[None, None, :] * (depth * (0.55 + 0.45 * corner))[..., None]
        mxs = np.broadcast_to((xs - cx)[None, :], rel_u.shape)
        open_gap = float(gap.max())
        # tongue and lower teeth ride on the lower lip; upper teeth hang from the upper lip
        tongue_vis = float(np.clip((open_gap - 0.1 * self.ref) / (0.2 * self.ref), 0, 1))
        if tongue_vis > 0:
            self._over(img, self.tongue, mxs, rel_l + 0.04 * self.mw, tongue_vis)
        start, grow = self.lower_show
        lower_vis = float(np.clip((open_gap - start * self.ref) / (grow * self.ref), 0, 1))
        if lower_vis > 0:
            self._over(img, self.lower, mxs, rel_l + self.lower_hidden, 0.9 * lower_vis)
        if self.upper is not None:
            self._over(img, self.upper, mxs, rel_u + 0.035 * self.mw, 1.0)
        # the lips' inner edges cast a soft shadow into the mouth
        lip_sh = 1 - 0.3 * np.exp(-np.maximum(rel_u, 0) / max(0.02 * self.mw, 0.6))
        lip_sh *= 1 - 0.35 * np.exp(-np.maximum(rel_l, 0) / max(0.02 * self.mw, 0.6))
        img *= lip_sh[..., None]
        a = (mask.astype(np.float32) / 255.0)[..., None]
        roi = frame[y0:y1, x0:x1]
        rgb = roi[..., :3].astype(np.float32)
        rgb += a * (img * 255.0 - rgb)
        roi[..., :3] = (rgb + 0.5).astype(np.uint8)
        if frame.shape[2] == 4:
            roi[..., 3] = np.maximum(roi[..., 3], mask)

    @staticmethod
    def _over(img: np.ndarray, tex: np.ndarray, mx: np.ndarray, rows: np.ndarray, k: float) -> None:
        th, tw = tex.shape[:2]
        map_x = (mx + tw // 2).astype(np.float32)
        map_y = np.ascontiguousarray(rows, dtype=np.float32)
        s = cv2.remap(tex, np.ascontiguousarray(map_x), map_y, cv2.INTER_LINEAR,
                      borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
        a = s[..., 3:4] * k
        img += a * (s[..., :3] - img)
