"""Alpha matte for the transparent background, computed once per avatar.

OpenCV GrabCut seeded from the face geometry: the face is sure foreground, an enlarged head
ellipse (hair) and a neck/shoulder trapezoid are probable foreground, the top and side borders
above the chin are sure background. The result is cleaned (largest component, holes filled)
and feathered.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from facecast.render.geometry import FaceGeometry

logger = logging.getLogger(__name__)

_WORK = 320  # GrabCut runs at this size


def compute_matte(rgb: np.ndarray, geom: FaceGeometry, iterations: int = 4) -> np.ndarray:
    """uint8 alpha (0 background .. 255 foreground) the size of `rgb`."""
    h, w = rgb.shape[:2]
    k = _WORK / max(h, w)
    small = cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)
    sh, sw = small.shape[:2]
    g = geom.transformed(k)
    oval = g["face_oval"]
    x0, y0, x1, y1 = g.face_box
    cx, fw, fh = (x0 + x1) / 2, x1 - x0, y1 - y0
    mask = np.full((sh, sw), cv2.GC_PR_BGD, np.uint8)
    # probable foreground: head with hair, neck, shoulders down to the bottom edge
    cv2.ellipse(mask, (round(cx), round((y0 + y1) / 2 - 0.1 * fh)), (round(0.72 * fw), round(0.68 * fh)),
                0, 0, 360, cv2.GC_PR_FGD, -1)
    body = np.array([[cx - 0.32 * fw, y1 - 0.1 * fh], [cx + 0.32 * fw, y1 - 0.1 * fh],
                     [cx + 1.2 * fw, sh + 1], [cx - 1.2 * fw, sh + 1]])
    cv2.fillPoly(mask, [np.round(body).astype(np.int32)], cv2.GC_PR_FGD)
    # sure background: top border and the side borders above the chin
    b = max(2, round(0.03 * max(sh, sw)))
    mask[:b, :] = cv2.GC_BGD
    chin = int(min(max(y1, 0), sh))
    mask[:chin, :b] = cv2.GC_BGD
    mask[:chin, -b:] = cv2.GC_BGD
    # sure foreground: the face itself, shrunk a little
    centre = oval.mean(0)
    inner = centre + 0.88 * (oval - centre)
    cv2.fillPoly(mask, [np.round(inner).astype(np.int32)], cv2.GC_FGD)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(np.ascontiguousarray(small[..., ::-1]), mask, None, bgd, fgd, iterations,
                    cv2.GC_INIT_WITH_MASK)  # type: ignore[call-overload]
    except cv2.error as exc:  # degenerate images (flat colour): fall back to the seeds
        logger.warning("grabcut failed, using the seed mask: %s", exc)
    fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    fg = _largest_component(fg, inner)
    fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    soft = cv2.resize(fg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    soft = cv2.GaussianBlur(soft, (0, 0), max(0.8, 0.6 / k))
    return np.clip(soft * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _largest_component(fg: np.ndarray, face: np.ndarray) -> np.ndarray:
    """Keep the component that holds the face; fill holes inside it."""
    n, labels = cv2.connectedComponents(fg, connectivity=8)
    if n <= 1:
        return fg
    c = np.round(face.mean(0)).astype(int)
    c = np.clip(c, 0, [fg.shape[1] - 1, fg.shape[0] - 1])
    lab = labels[c[1], c[0]]
    if lab == 0:
        lab = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
    keep = (labels == lab).astype(np.uint8)
    inv = 1 - keep
    n2, lab2 = cv2.connectedComponents(inv, connectivity=4)
    border = set(np.unique(np.concatenate([lab2[0], lab2[-1], lab2[:, 0], lab2[:, -1]])).tolist())
    holes = (inv == 1) & ~np.isin(lab2, list(border))
    keep[holes] = 1
    return keep
