"""A portrait's own upper teeth: where their biting edge is, so the jaw opens below it.

Face meshes fit a smiling mouth loosely: on a photo that shows its teeth the inner upper lip
often lands inside the teeth and the inner lower lip on the lower lip. Pixels decide instead:
teeth are the bright, unsaturated pixels inside the outer lip contour (low CIELAB a* next to the
red lips). Per column the upper run of tooth pixels is followed down to its last row; the
smoothed lower envelope of those rows, a pixel below, is the seam where the mouth opens. The
teeth above it stay with the upper lip and the lower lip moves away beneath them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from facecast.render.geometry import FaceGeometry

logger = logging.getLogger(__name__)

MIN_COVERAGE = 0.5  # share of the central columns that must show upper teeth


def _interp_line(pts: np.ndarray, xs: np.ndarray) -> np.ndarray:
    o = np.argsort(pts[:, 0])
    return np.interp(xs, pts[o, 0], pts[o, 1])


@dataclass(frozen=True)
class UpperTeeth:
    """The visible upper teeth of a portrait."""

    seam: np.ndarray  # (11, 2) left to right, like the inner-lip polylines: opens just below
    rgb: np.ndarray  # their typical colour, 0..1


def find_upper_teeth(img: np.ndarray, geom: FaceGeometry) -> UpperTeeth | None:
    """The upper teeth of an RGB portrait, or None when it shows none."""
    h, w = img.shape[:2]
    mw = geom.mouth_width
    ou, ol = geom["lip_outer_upper"], geom["lip_outer_lower"]
    iu, il = geom["lip_inner_upper"], geom["lip_inner_lower"]
    x0 = max(int(np.floor(min(ou[:, 0].min(), ol[:, 0].min()))), 0)
    x1 = min(int(np.ceil(max(ou[:, 0].max(), ol[:, 0].max()))) + 1, w)
    y0 = max(int(np.floor(ou[:, 1].min())) - 1, 0)
    y1 = min(int(np.ceil(ol[:, 1].max())) + 2, h)
    if x1 - x0 < 8 or y1 - y0 < 4:
        return None
    roi = np.ascontiguousarray(img[y0:y1, x0:x1, :3])
    lab = cv2.cvtColor(roi, cv2.COLOR_RGB2Lab).astype(np.float32)
    lum, red = lab[..., 0] * (100.0 / 255.0), lab[..., 1] - 128.0
    # the lip colour from the lower lip (the mesh's lower lip band is reliable even on smiles)
    band = np.zeros(roi.shape[:2], np.uint8)
    poly = np.concatenate([il, ol[::-1]]) - [x0, y0]
    cv2.fillPoly(band, [np.round(poly).astype(np.int32)], 255)
    inside = np.zeros_like(band)
    poly = np.concatenate([ou, ol[::-1]]) - [x0, y0]
    cv2.fillPoly(inside, [np.round(poly).astype(np.int32)], 255)
    inside = np.asarray(cv2.erode(inside, np.ones((3, 3), np.uint8)), np.uint8)
    if not band.any():
        return None
    lip_red = float(np.median(red[band > 0]))
    lip_lum = float(np.median(lum[band > 0]))
    if lip_red < 6.0:  # no red lips to tell teeth from (grey image, odd light): keep the mesh
        return None
    tooth = (red < min(0.45 * lip_red, lip_red - 6.0)) & (lum > lip_lum) & (inside > 0)
    # per column: the first run of tooth pixels from the top, bridging 1-px holes
    xs = np.arange(x0, x1, dtype=np.float64)
    cx = float(geom.mouth_center[0])
    run_min = max(2.0, 0.04 * mw)
    edge = np.full(len(xs), np.nan)
    for j in range(len(xs)):
        rows = np.flatnonzero(tooth[:, j])
        if len(rows) == 0:
            continue
        breaks = np.flatnonzero(np.diff(rows) > 2)
        last = rows[breaks[0]] if len(breaks) else rows[-1]
        if last - rows[0] + 1 >= run_min:
            edge[j] = y0 + last
    central = np.abs(xs - cx) < 0.3 * mw
    coverage = float(np.mean(np.isfinite(edge[central]))) if central.any() else 0.0
    if coverage < MIN_COVERAGE:
        logger.debug("no upper teeth in the portrait (coverage %.2f)", coverage)
        return None
    # seam at the inner-lip sample positions: lowest tooth edge nearby, a pixel below it
    mid = 0.5 * (iu + il)
    seam = mid.copy()
    half = max(1.0, 0.04 * mw)
    found = np.zeros(len(mid), bool)
    for i, (px, _) in enumerate(mid):
        near = np.isfinite(edge) & (np.abs(xs - px) <= half)
        if near.any():
            seam[i, 1] = float(edge[near].max()) + 1.0
            found[i] = True
    if found.sum() < 3:
        return None
    # where no tooth was found (towards the corners) keep the offset from the midline, tapered
    off = seam[:, 1] - mid[:, 1]
    k = np.arange(len(mid))
    off = np.interp(k, k[found], off[found])
    taper = np.clip(1 - (np.abs(mid[:, 0] - cx) / (0.5 * mw)) ** 4, 0, 1)
    seam[:, 1] = mid[:, 1] + off * np.where(found, 1.0, taper)
    seam[[0, -1]] = mid[[0, -1]]  # the corners stay where the lips meet
    lower_mid = 0.5 * (il[:, 1] + _interp_line(ol, il[:, 0]))
    seam[:, 1] = np.clip(seam[:, 1], iu[:, 1], np.maximum(lower_mid, iu[:, 1]))
    rgb = np.median(roi[tooth & central[None, :]].reshape(-1, 3), axis=0) / 255.0
    logger.debug("upper teeth found (coverage %.2f)", coverage)
    return UpperTeeth(seam, rgb.astype(np.float32))
