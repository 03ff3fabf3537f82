"""The `warp2d` renderer core: a portrait deformed by a few analytic displacement fields.

Per avatar and output size we precompute displacement "blendshapes" on a coarse grid
(jaw drop, lip spread/round, smile, pucker, blinks, brow raise, head translation/rotation,
breathing). A frame is a linear combination of them, inverted to a backward map by a
fixed-point iteration, upsampled and applied with one `cv2.remap`. The mouth interior is then
painted into the gap between the deformed lips (see `mouth.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from facecast.render.geometry import FaceGeometry

logger = logging.getLogger(__name__)

FIELDS = ("jaw", "lip_h", "smile", "pucker", "blink_r", "blink_l", "brow",
          "head_x", "head_y", "head_c", "head_s", "breath")
STRIDE = 4
_INVERT_ITERS = 3
JAW_DROP = 0.42  # lower-lip drop at jaw coefficient 1, in units of the opening scale
OPEN_PER_EYE = 0.72  # the opening scale is the mouth width, at most this x the eye distance


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.clip(x, -40, 40)))


@dataclass
class FaceFrame:
    """Face-local frame: origin at the mouth centre, u along the eye line, v downwards."""

    origin: np.ndarray
    ex: np.ndarray
    ey: np.ndarray

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        dx, dy = x - self.origin[0], y - self.origin[1]
        return dx * self.ex[0] + dy * self.ex[1], dx * self.ey[0] + dy * self.ey[1]


class WarpRig:
    """Displacement bases for one avatar at one output size (forward fields, pixels)."""

    def __init__(self, geom: FaceGeometry, width: int, height: int, stride: int = STRIDE,
                 seam: np.ndarray | None = None) -> None:
        """`seam` (points left to right) is where the mouth opens; by default midway between
        the inner lips."""
        self.width, self.height, self.stride = width, height, stride
        self.geom = geom
        gh, gw = -(-height // stride), -(-width // stride)
        self.grid_shape = (gh, gw)
        gy, gx = np.mgrid[0:gh, 0:gw].astype(np.float64)
        gx = gx * stride + (stride - 1) / 2.0
        gy = gy * stride + (stride - 1) / 2.0
        er, el = geom.eye_center("r"), geom.eye_center("l")
        d = (el - er) / np.linalg.norm(el - er)
        self.frame = FaceFrame(geom.mouth_center, d, np.array([-d[1], d[0]]))
        self.mw = geom.mouth_width
        # opening amplitudes scale with the mouth, but a wide smile should not open wider than
        # a relaxed mouth of that face would, so the eye distance bounds the scale
        self.open_ref = min(self.mw, OPEN_PER_EYE * float(np.linalg.norm(el - er)))
        x0, y0, x1, y1 = geom.face_box
        self.fw, self.fh = x1 - x0, y1 - y0
        oval_u, oval_v = self.frame.local(geom["face_oval"][:, 0], geom["face_oval"][:, 1])
        self.v_chin = float(oval_v.max())
        self.v_top = float(oval_v.min())
        up_u, up_v = self.frame.local(geom["lip_inner_upper"][:, 0], geom["lip_inner_upper"][:, 1])
        lo_u, lo_v = self.frame.local(geom["lip_inner_lower"][:, 0], geom["lip_inner_lower"][:, 1])
        ou_u, ou_v = self.frame.local(geom["lip_outer_lower"][:, 0], geom["lip_outer_lower"][:, 1])
        self.lip_lo = float(ou_v.max() - lo_v.max()) * 0.8  # lower-lip thickness moves rigidly
        if seam is None:
            self.seam_u, self.seam_v = 0.5 * (up_u + lo_u), 0.5 * (up_v + lo_v)
        else:
            self.seam_u, self.seam_v = self.frame.local(seam[:, 0], seam[:, 1])
        order = np.argsort(self.seam_u)
        self.seam_u, self.seam_v = self.seam_u[order], self.seam_v[order]
        fields = self._fields(gx, gy)
        self.basis = np.stack([fields[k] for k in FIELDS]).reshape(len(FIELDS), -1).astype(np.float32)
        self._cid = np.stack(np.meshgrid(np.arange(gw, dtype=np.float32),
                                         np.arange(gh, dtype=np.float32)), -1)
        self._id_full = np.stack(np.meshgrid(np.arange(width, dtype=np.float32),
                                             np.arange(height, dtype=np.float32)), -1)

    # ------------------------------------------------------------------ fields
    def _fields(self, x: np.ndarray, y: np.ndarray, side: float | None = None) -> dict[str, np.ndarray]:
        """Forward displacement (..., 2) per field at points (x, y). `side` forces the lip side
        (+1 below the seam, -1 above) for sampling exactly on the lip lines."""
        g, f = self.geom, self.frame
        u, v = f.local(x, y)
        mw, hw, fw, fh = self.mw, self.mw / 2, self.fw, self.fh
        ex, ey = f.ex, f.ey

        def vec(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # local (a along u, b along v) -> image
            return np.stack([a * ex[0] + b * ey[0], a * ex[1] + b * ey[1]], -1)

        zero = np.zeros_like(u)
        seam = np.interp(u, self.seam_u, self.seam_v)
        soft = 0.35 * self.stride + 0.5 * np.maximum(np.abs(u) - hw, 0)
        s_below = _sigmoid((v - seam) / soft) if side is None else np.full_like(u, (side + 1) / 2)
        lens = np.clip(1 - (u / (0.92 * hw)) ** 2, 0, None) ** 1.1
        a = 1 - _smoothstep((v - self.lip_lo) / (0.6 * mw))
        rigid = np.exp(-((u / (0.36 * fw)) ** 4))
        fall = 1 - _smoothstep((v - self.v_chin + 0.05 * fh) / (0.13 * fh))
        jaw = s_below * fall * (a * lens + (1 - a) * rigid)
        jaw -= 0.12 * (1 - s_below) * lens * np.exp(-((v / (0.25 * mw)) ** 2))
        out: dict[str, np.ndarray] = {"jaw": vec(zero, jaw * JAW_DROP * self.open_ref)}
        # vertical reach of the lip fields: a relaxed mouth's size (a smile's width would carry
        # the lip motion up to the eyes)
        rm = self.open_ref
        near = np.exp(-((u / (0.85 * mw)) ** 2) - (v / (0.6 * rm)) ** 2)
        out["lip_h"] = vec(u * near * 0.7, zero)
        corner = np.clip(np.abs(u) / hw, 0, 1.4) ** 2
        out["smile"] = vec(zero, -corner * np.exp(-((u / (0.9 * mw)) ** 2) - (v / (0.5 * rm)) ** 2) * hw)
        out["pucker"] = vec(zero, (2 * s_below - 1) * lens * np.exp(-((v / (0.4 * mw)) ** 2)) * hw)
        for side_name in ("r", "l"):
            out[f"blink_{side_name}"] = self._blink(x, y, side_name)
        brow_pts = np.concatenate([g["brow_r"], g["brow_l"]])
        bu, bv = f.local(brow_pts[:, 0], brow_pts[:, 1])
        ew = float(np.ptp(f.local(g["eye_r_upper"][:, 0], g["eye_r_upper"][:, 1])[0]))
        brow_w = np.exp(-(((v - bv.mean()) / (0.9 * ew)) ** 2)) * (
            1 - _smoothstep((np.abs(u - bu.mean()) - 0.5 * np.ptp(bu)) / (0.4 * ew)))
        out["brow"] = vec(zero, -brow_w * 0.12 * ew)
        # head: feathered ellipse around the head (hair included), pivot at the neck
        cu, cv_ = 0.0, 0.5 * (self.v_top + self.v_chin) - 0.12 * fh
        rx, ry = 0.78 * fw, 0.72 * fh
        r = np.sqrt(((u - cu) / rx) ** 2 + ((v - cv_) / ry) ** 2)
        hm = 1 - _smoothstep((r - 0.8) / 0.45)
        hm *= 1 - _smoothstep((v - self.v_chin - 0.05 * fh) / (0.35 * fh))
        px, py = f.origin + ey * (self.v_chin + 0.25 * fh)
        out["head_x"] = np.stack([hm, zero], -1)
        out["head_y"] = np.stack([zero, hm], -1)
        out["head_c"] = np.stack([hm * (x - px), hm * (y - py)], -1)
        out["head_s"] = np.stack([hm * -(y - py), hm * (x - px)], -1)
        body = _smoothstep((v - self.v_chin - 0.15 * fh) / (0.35 * fh)) * (1 - hm)
        out["breath"] = np.stack([zero, -body], -1)
        return out

    def _blink(self, x: np.ndarray, y: np.ndarray, side: str) -> np.ndarray:
        """Upper lid travels to the lower lid at coefficient 1; skin above stretches down."""
        g = self.geom
        er, el = g.eye_center("r"), g.eye_center("l")
        d = (el - er) / np.linalg.norm(el - er)
        c = g.eye_center(side)
        fr = FaceFrame(c, d, np.array([-d[1], d[0]]))
        uu, uv = fr.local(g[f"eye_{side}_upper"][:, 0], g[f"eye_{side}_upper"][:, 1])
        lu, lv = fr.local(g[f"eye_{side}_lower"][:, 0], g[f"eye_{side}_lower"][:, 1])
        ou, ol = np.argsort(uu), np.argsort(lu)
        u, v = fr.local(x, y)
        ew = float(uu.max() - uu.min())
        v_up = np.interp(u, uu[ou], uv[ou])
        v_lo = np.interp(u, lu[ol], lv[ol])
        v_lo = np.maximum(v_lo, v_up + 0.5)
        gap = v_lo - v_up
        hb = 0.5 * ew
        above = gap * _smoothstep((v - (v_up - hb)) / hb)
        between = v_lo - v
        prof = np.where(v < v_up, above, np.where(v <= v_lo, between, 0.0))
        edge = np.maximum(uu.min() - u, u - uu.max())
        prof *= 1 - _smoothstep(edge / (0.3 * ew))
        return np.stack([prof * fr.ey[0], prof * fr.ey[1]], -1)

    def point_basis(self, pts: np.ndarray, side: float) -> np.ndarray:
        """Field values (n_fields, n_pts, 2) at given points on one side of the lip seam."""
        f = self._fields(pts[:, 0], pts[:, 1], side=side)
        return np.stack([f[k] for k in FIELDS]).astype(np.float32)

    # ------------------------------------------------------------------ per frame
    def backward_map(self, coeffs: np.ndarray) -> np.ndarray:
        """Full-resolution sampling map (H, W, 2) float32 for forward coefficients."""
        gh, gw = self.grid_shape
        s = float(self.stride)
        fwd = (coeffs.astype(np.float32) @ self.basis).reshape(gh, gw, 2) / s
        bk = -fwd
        for _ in range(_INVERT_ITERS):
            bk = -cv2.remap(fwd, self._cid + bk, None, cv2.INTER_LINEAR,  # type: ignore[call-overload]
                            borderMode=cv2.BORDER_REPLICATE)
        full = cv2.resize(bk * s, (self.width, self.height), interpolation=cv2.INTER_LINEAR)
        return np.asarray(full, np.float32) + self._id_full
