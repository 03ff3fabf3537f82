"""The built-in avatar: an original illustrated character drawn procedurally with numpy/OpenCV.

Run ``python -m facecast.render.character`` to regenerate ``assets/default/`` (portrait, alpha
matte and face geometry). Everything is drawn from parametric curves, so the landmarks the
renderer needs are known by construction; no photo and no model is involved.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

SIZE = 1024
_SS = 4  # fillPoly sub-pixel bits

Pts = np.ndarray


def _bez(p0: tuple[float, float], p1: tuple[float, float], p2: tuple[float, float],
         p3: tuple[float, float], n: int = 40) -> Pts:
    t = np.linspace(0.0, 1.0, n)[:, None]
    a, b, c, d = (np.array(p, dtype=np.float64) for p in (p0, p1, p2, p3))
    return (1 - t) ** 3 * a + 3 * (1 - t) ** 2 * t * b + 3 * (1 - t) * t**2 * c + t**3 * d


def _mask(pts: Pts, blur: float = 0.0) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), np.uint8)
    cv2.fillPoly(m, [np.round(pts * (1 << _SS)).astype(np.int32)], 255, cv2.LINE_AA, shift=_SS)
    f = m.astype(np.float32) / 255.0
    if blur > 0:
        f = np.asarray(cv2.GaussianBlur(f, (0, 0), blur), np.float32)
    return f


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 120) -> Pts:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def _stroke(pts: Pts, w0: float, w1: float, taper_both: bool = True) -> Pts:
    """A tapered brush stroke along a polyline, as a closed polygon."""
    d = np.gradient(pts, axis=0)
    nrm = np.stack([-d[:, 1], d[:, 0]], 1)
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True) + 1e-9
    s = np.linspace(0, 1, len(pts))
    w = w0 + (w1 - w0) * s
    if taper_both:
        w = w * np.sin(np.pi * np.clip(s, 0.02, 0.98)) ** 0.6
    return np.concatenate([pts + nrm * w[:, None] / 2, (pts - nrm * w[:, None] / 2)[::-1]])


def _over(canvas: np.ndarray, color: np.ndarray | tuple[float, float, float], m: np.ndarray) -> None:
    col = np.asarray(color, np.float32)
    m3 = m[..., None]
    canvas *= 1 - m3
    canvas += m3 * col


def _mul(canvas: np.ndarray, factor: np.ndarray, m: np.ndarray) -> None:
    f = np.asarray(factor, np.float32)
    if f.ndim == 2:
        f = f[..., None]
    canvas *= 1 - m[..., None] * (1 - f)


def _rgb(h: str) -> np.ndarray:
    return np.array([int(h[i:i + 2], 16) for i in (1, 3, 5)], np.float32) / 255.0


def draw_character() -> tuple[np.ndarray, np.ndarray, dict[str, list[list[float]]]]:
    """Return (RGB uint8 SIZE², alpha uint8 SIZE², geometry in pixel coordinates)."""
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    rng = np.random.default_rng(7)
    cx, eye_y, mouth_y = 512.0, 478.0, 652.0

    # ---- background: soft teal-to-slate gradient with a warm glow behind the head
    top, bot = _rgb("#cfe3e1"), _rgb("#7fa3ad")
    g = (yy / SIZE)[..., None]
    canvas = (top * (1 - g) + bot * g).astype(np.float32)
    glow = np.exp(-(((xx - 470) / 420) ** 2 + ((yy - 380) / 360) ** 2))[..., None]
    canvas += glow * (_rgb("#fff3dc") - canvas) * 0.55
    alpha = np.zeros((SIZE, SIZE), np.float32)

    # ---- shoulders and sweater
    body = np.concatenate([
        _bez((60, 1030), (90, 880), (250, 820), (400, 800)),
        _bez((400, 800), (470, 830), (554, 830), (624, 800)),
        _bez((624, 800), (774, 820), (934, 880), (964, 1030)),
    ])
    mb = _mask(body, 1.0)
    sweater = _rgb("#d9893b")
    shade = 0.78 + 0.22 * np.clip(1 - np.abs(xx - 470) / 520, 0, 1)
    _over(canvas, sweater * shade[..., None], mb)
    # knit ribs
    rib = 0.5 + 0.5 * np.cos((xx - cx) / 7.0)
    _mul(canvas, 1 - 0.035 * rib, mb * np.clip((yy - 930) / 40, 0, 1))
    fold = np.exp(-(((xx - 300) / 40) ** 2)) * np.clip((yy - 880) / 100, 0, 1)
    fold += np.exp(-(((xx - 724) / 40) ** 2)) * np.clip((yy - 880) / 100, 0, 1)
    _mul(canvas, 1 - 0.12 * fold, mb)
    alpha = np.maximum(alpha, mb)

    # ---- neck with a shadow under the jaw
    skin = _rgb("#f2c4a0")
    neck = np.concatenate([
        _bez((440, 640), (442, 720), (430, 790), (410, 830)),
        _bez((410, 830), (470, 870), (554, 870), (614, 830)),
        _bez((614, 830), (594, 790), (582, 720), (584, 640)),
    ])
    mn = _mask(neck, 0.8)
    ntone = skin * (0.86 + 0.1 * np.clip((xx - 440) / 150, 0, 1))[..., None] * 0.95
    _over(canvas, ntone, mn)
    jaw_shadow = np.exp(-(((yy - 760) / 38) ** 2)) * np.exp(-(((xx - cx) / 120) ** 2))
    _mul(canvas, 1 - 0.28 * jaw_shadow, mn)
    # collar: a rolled crew neck
    collar = np.concatenate([
        _bez((392, 812), (460, 880), (564, 880), (632, 812)),
        _bez((632, 812), (650, 850), (600, 905), (512, 910))[1:],
        _bez((512, 910), (424, 905), (374, 850), (392, 812))[1:],
    ])
    mc = _mask(collar, 1.0)
    cshade = 0.85 + 0.2 * np.clip(1 - ((yy - 860) / 40) ** 2, 0, 1)
    _over(canvas, _rgb("#c4732c") * cshade[..., None], mc)
    alpha = np.maximum(alpha, np.maximum(mn, mc))

    # ---- hair, back layer (behind the face)
    hair = _rgb("#5a3a2e")
    hair_back = np.concatenate([
        _bez((290, 520), (250, 330), (330, 170), (512, 160)),
        _bez((512, 160), (700, 160), (780, 330), (736, 540)),
        _bez((736, 540), (742, 640), (700, 700), (664, 720)),
        _bez((664, 720), (640, 600), (400, 600), (362, 720)),
        _bez((362, 720), (320, 690), (282, 620), (290, 520)),
    ])
    mh = _mask(hair_back, 1.2)
    _over(canvas, hair * 0.72, mh)
    alpha = np.maximum(alpha, mh)

    # ---- ears
    for sx in (-1, 1):
        ex = cx + sx * 208
        ear = _ellipse(ex, 500, 30, 52)
        me = _mask(ear, 0.8)
        _over(canvas, skin * 0.93, me)
        inner = _mask(_ellipse(ex + sx * 2, 502, 14, 30), 2.0)
        _mul(canvas, np.array([0.82, 0.72, 0.7]), inner * 0.8)
        alpha = np.maximum(alpha, me)

    # ---- face
    t = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    fx = np.sin(t)
    fy = -np.cos(t)
    hw = np.where(fy > 0, 212 * (1 - 0.33 * np.abs(fy) ** 2.2), 214.0)
    face_oval = np.stack([cx + hw * fx, 492 + np.where(fy > 0, 262, 290) * fy], 1)
    mf = _mask(face_oval, 0.8)
    # shading: light from upper left; soft cheek volume
    nx = (xx - cx) / 214
    ny = (yy - 500) / 280
    lit = 1.0 - 0.10 * np.clip(nx + 0.2, 0, 2) - 0.12 * np.clip(ny - 0.45, 0, 1) * 2
    lit -= 0.08 * np.clip(np.abs(nx) - 0.6, 0, 1) * 3
    face_col = skin * lit[..., None]
    _over(canvas, face_col, mf)
    alpha = np.maximum(alpha, mf)
    # cheek blush
    for sx in (-1, 1):
        blush = np.exp(-(((xx - (cx + sx * 128)) / 62) ** 2 + ((yy - 590) / 40) ** 2))
        _over(canvas, _rgb("#f09a8c"), blush * mf * 0.35)
    # chin highlight and shadow below the lower lip
    chin_hi = np.exp(-(((xx - cx + 10) / 60) ** 2 + ((yy - 722) / 22) ** 2))
    _over(canvas, _rgb("#fcd8bd"), chin_hi * mf * 0.45)
    sub_lip = np.exp(-(((xx - cx) / 50) ** 2 + ((yy - 693) / 10) ** 2))
    _mul(canvas, np.array([0.9, 0.85, 0.85]), sub_lip * mf)

    # ---- hair, front: fringe swept to one side, with strands and a sheen
    fringe = np.concatenate([
        _bez((300, 470), (290, 300), (380, 196), (520, 196)),
        _bez((520, 196), (660, 196), (740, 300), (726, 470)),
        _bez((726, 470), (712, 400), (690, 330), (640, 300)),
        _bez((640, 300), (580, 340), (470, 350), (380, 390)),
        _bez((380, 390), (350, 410), (320, 440), (300, 470)),
    ])
    mfr = _mask(fringe, 1.0)
    hshade = (0.85 + 0.3 * np.clip(1 - np.hypot((xx - 450) / 250, (yy - 250) / 120), 0, 1))
    _over(canvas, hair * hshade[..., None], mfr)
    ang = np.arctan2(yy - 540, xx - 512)
    noise = cv2.GaussianBlur(rng.normal(0, 1, (SIZE, 64)).astype(np.float32), (0, 0), 1.2)
    col_idx = ((ang + np.pi) / (2 * np.pi) * 64 * 9).astype(np.int32) % 64
    strands = 0.5 + 0.5 * np.tanh(noise[np.clip(yy.astype(np.int32), 0, SIZE - 1) // 16 * 0, col_idx])
    strands = cv2.GaussianBlur(strands.astype(np.float32), (0, 0), 0.8)
    _mul(canvas, 1 - 0.14 * strands, mfr)
    _mul(canvas, 1 - 0.2 * strands, mh * (1 - mf) * (1 - mfr))
    sheen = np.exp(-(((yy - 250 - 0.15 * (xx - 450)) / 16) ** 2)) * np.exp(-(((xx - 470) / 150) ** 2))
    _over(canvas, _rgb("#b98a6c"), sheen * mfr * 0.6)
    alpha = np.maximum(alpha, mfr)
    # soft shadow of the fringe on the forehead
    fr_sh = cv2.GaussianBlur(mfr, (0, 0), 10)
    _mul(canvas, np.array([0.86, 0.8, 0.8]), np.clip(fr_sh - mfr, 0, 1) * mf * 1.2)

    geometry: dict[str, list[list[float]]] = {"face_oval": face_oval[::6].tolist()}

    # ---- eyebrows
    for name, sx in (("brow_r", -1), ("brow_l", 1)):
        bx = cx + sx * 92
        brow = _bez((bx - sx * 58, 412), (bx - sx * 30, 388), (bx + sx * 20, 384), (bx + sx * 60, 402))
        pts = brow if sx < 0 else brow
        mbw = _mask(_stroke(pts, 18, 9), 0.7)
        _over(canvas, _rgb("#4a2f25"), mbw * 0.95)
        geometry[name] = pts[:: len(pts) // 4][:5].tolist()

    # ---- eyes: almond shape, sclera, iris with gradient, pupil, highlights, lash line
    iris_col = _rgb("#5c8a4d")
    for name, sx in (("r", -1), ("l", 1)):
        ex = cx + sx * 94
        lo, hi_ = (ex - 54, ex + 54)
        inner_x, outer_x = (hi_, lo) if sx < 0 else (lo, hi_)
        upper = _bez((lo, eye_y + 4), (lo + 22, eye_y - 38), (hi_ - 26, eye_y - 40), (hi_, eye_y + 2), 41)
        lower = _bez((lo, eye_y + 4), (lo + 26, eye_y + 28), (hi_ - 26, eye_y + 28), (hi_, eye_y + 2), 41)
        if sx > 0:  # mirror so the outer corner sits lower on both sides
            upper = np.stack([2 * ex - upper[::-1, 0], upper[::-1, 1]], 1)
            lower = np.stack([2 * ex - lower[::-1, 0], lower[::-1, 1]], 1)
        eye_poly = np.concatenate([upper, lower[::-1]])
        me = _mask(eye_poly, 0.6)
        sclera = np.array([0.97, 0.96, 0.94]) * (0.9 + 0.1 * np.clip((yy - eye_y + 20) / 30, 0, 1))[..., None]
        _over(canvas, sclera, me)
        ix, iy = ex + sx * 2, eye_y - 2
        rr = np.hypot(xx - ix, yy - iy)
        ir = 28.0
        iris_m = np.clip(ir + 0.5 - rr, 0, 1) * me
        radial = np.clip(rr / ir, 0, 1)[..., None]
        icol = iris_col * (0.55 + 0.6 * radial) * (1.0 - 0.25 * radial**6)
        fib = 0.96 + 0.04 * np.cos(np.arctan2(yy - iy, xx - ix) * 24)
        _over(canvas, icol * fib[..., None], iris_m)
        _over(canvas, np.array([0.08, 0.06, 0.06]), np.clip(12.0 + 0.5 - rr, 0, 1) * me)
        # upper-lid shadow on the eyeball
        lid_sh = np.clip(1 - (yy - (eye_y - 30)) / 22, 0, 1)
        _mul(canvas, np.array([0.78, 0.74, 0.76]), lid_sh * me * 0.9)
        for hx, hy, hr in ((ix - 8, iy - 9, 6.0), (ix + 9, iy + 8, 2.6)):
            hm = np.clip(hr + 0.5 - np.hypot(xx - hx, yy - hy), 0, 1) * me
            _over(canvas, np.array([1.0, 1.0, 1.0]), hm * 0.95)
        # lash line (thick, tapering, with a flick at the outer corner), lower lid line
        outer_end = upper[0] if sx < 0 else upper[-1]
        flick_dir = np.array([sx * 9.0, -8.0])
        lash = np.concatenate([upper, [outer_end + flick_dir]]) if sx > 0 else np.concatenate(
            [[outer_end + flick_dir], upper])
        _over(canvas, _rgb("#2c1c18"), _mask(_stroke(lash, 9.0, 9.0), 0.5))
        _over(canvas, _rgb("#a0685a"), _mask(_stroke(lower[4:-4], 2.2, 2.2), 0.5) * 0.7)
        crease = upper[6:-6] + np.array([0.0, -14.0])
        _over(canvas, _rgb("#c98f78"), _mask(_stroke(crease, 2.6, 2.6), 1.0) * 0.55)
        geometry[f"eye_{name}_upper"] = upper[::5].tolist()
        geometry[f"eye_{name}_lower"] = lower[::5].tolist()
        geometry[f"eye_{name}_center"] = [[ix, iy]]
        del inner_x, outer_x

    # ---- nose: a soft side shadow, nostrils, a tip highlight
    nose_y = 584.0
    side = _stroke(_bez((cx + 16, 500), (cx + 24, 540), (cx + 30, 566), (cx + 22, nose_y)), 10, 4)
    _mul(canvas, np.array([0.9, 0.84, 0.82]), _mask(side, 4.0) * 1.0)
    for sx in (-1, 1):
        nost = _ellipse(cx + sx * 17, nose_y + 4, 7, 3.6)
        _mul(canvas, np.array([0.62, 0.45, 0.42]), _mask(nost, 1.2) * 0.9)
    base = _stroke(_bez((cx - 30, nose_y - 2), (cx - 14, nose_y + 14), (cx + 14, nose_y + 14), (cx + 30, nose_y - 2)), 3.5, 3.5)
    _mul(canvas, np.array([0.8, 0.66, 0.62]), _mask(base, 1.2) * 0.6)
    tip = np.exp(-(((xx - cx + 6) / 13) ** 2 + ((yy - nose_y + 14) / 9) ** 2))
    _over(canvas, _rgb("#ffe2cc"), tip * 0.55)
    geometry["nose_tip"] = [[cx, nose_y]]

    # ---- mouth: closed, slight smile; upper lip with a cupid's bow, fuller lower lip
    mw = 66.0
    lc, rc = (cx - mw, mouth_y - 3), (cx + mw, mouth_y - 3)
    seam = np.concatenate([
        _bez(lc, (cx - 44, mouth_y + 4), (cx - 18, mouth_y + 3), (cx, mouth_y + 3), 21),
        _bez((cx, mouth_y + 3), (cx + 18, mouth_y + 3), (cx + 44, mouth_y + 4), rc, 21)[1:],
    ])
    up_outer = np.concatenate([
        _bez(lc, (cx - 46, mouth_y - 14), (cx - 26, mouth_y - 26), (cx - 9, mouth_y - 19), 21),
        _bez((cx - 9, mouth_y - 19), (cx - 4, mouth_y - 15), (cx + 4, mouth_y - 15), (cx + 9, mouth_y - 19), 7)[1:],
        _bez((cx + 9, mouth_y - 19), (cx + 26, mouth_y - 26), (cx + 46, mouth_y - 14), rc, 21)[1:],
    ])
    lo_outer = _bez(lc, (cx - 40, mouth_y + 30), (cx + 40, mouth_y + 30), rc, 47)
    lip = _rgb("#d06a6a")
    mu = _mask(np.concatenate([up_outer, seam[::-1]]), 0.7)
    ml = _mask(np.concatenate([seam, lo_outer[::-1]]), 0.7)
    _over(canvas, lip * 0.86, mu)
    lo_shade = 0.9 + 0.14 * np.clip(1 - ((yy - mouth_y - 14) / 10) ** 2, 0, 1)
    _over(canvas, lip * lo_shade[..., None], ml)
    lip_hi = np.exp(-(((xx - cx + 8) / 22) ** 2 + ((yy - mouth_y - 15) / 4.5) ** 2))
    _over(canvas, _rgb("#f4b0a4"), lip_hi * ml * 0.75)
    _over(canvas, _rgb("#7a3036"), _mask(_stroke(seam, 3.2, 3.2), 0.6) * 0.9)
    for c in (lc, rc):  # dimples at the corners
        d = np.exp(-(((xx - c[0]) / 5) ** 2 + ((yy - c[1] + 1) / 5) ** 2))
        _mul(canvas, np.array([0.75, 0.6, 0.58]), d * 0.7)
    geometry["lip_outer_upper"] = up_outer[np.linspace(0, len(up_outer) - 1, 11).astype(int)].tolist()
    geometry["lip_outer_lower"] = lo_outer[np.linspace(0, len(lo_outer) - 1, 11).astype(int)].tolist()
    sidx = np.linspace(0, len(seam) - 1, 11).astype(int)
    geometry["lip_inner_upper"] = seam[sidx].tolist()
    geometry["lip_inner_lower"] = seam[sidx].tolist()

    # ordered dithering (4x4 Bayer) keeps gradients from banding and the PNG small
    bayer = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]], np.float32)
    dither = (np.tile(bayer, (SIZE // 4, SIZE // 4)) + 0.5) / 16.0
    rgb = np.clip(np.floor(canvas * 255.0 + dither[..., None]), 0, 255).astype(np.uint8)
    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    geometry = {k: [[round(float(x), 2) for x in p] for p in v] for k, v in geometry.items()}
    return rgb, a8, geometry


def write_assets(directory: Path) -> None:
    """Draw the character and write portrait.png, alpha.png and geometry.json."""
    rgb, alpha, geometry = draw_character()
    directory.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(directory / "portrait.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    cv2.imwrite(str(directory / "alpha.png"), alpha, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    meta = {"name": "Juniper",
            "meta": {"source": "drawn by facecast.render.character (original, Apache-2.0)"},
            "geometry": geometry}
    (directory / "geometry.json").write_text(json.dumps(meta, indent=1))
    logger.info("wrote the built-in avatar to %s", directory)


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "assets" / "default"
    write_assets(out)
