"""Face geometry the renderer needs: a few named landmark polylines in image pixels.

User portraits get it from the 468-point MediaPipe face mesh (`from_mesh`); the built-in
character knows it by construction. All polylines run left to right in the image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# MediaPipe FaceMesh indices, left to right in the image ("r" = the subject's right eye).
MESH_INDEX: dict[str, tuple[int, ...]] = {
    "lip_outer_upper": (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
    "lip_outer_lower": (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
    "lip_inner_upper": (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
    "lip_inner_lower": (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
    "eye_r_upper": (33, 246, 161, 160, 159, 158, 157, 173, 133),
    "eye_r_lower": (33, 7, 163, 144, 145, 153, 154, 155, 133),
    "eye_l_upper": (362, 398, 384, 385, 386, 387, 388, 466, 263),
    "eye_l_lower": (362, 382, 381, 380, 374, 373, 390, 249, 263),
    "brow_r": (70, 63, 105, 66, 107),
    "brow_l": (336, 296, 334, 293, 300),
    "nose_tip": (1,),
    "face_oval": (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378,
                  400, 377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54,
                  103, 67, 109),
}
REQUIRED = tuple(k for k in MESH_INDEX)


@dataclass(frozen=True)
class FaceGeometry:
    """Named (N, 2) float arrays of pixel coordinates."""

    points: dict[str, np.ndarray]

    def __getitem__(self, key: str) -> np.ndarray:
        return self.points[key]

    @staticmethod
    def from_mesh(mesh: np.ndarray) -> FaceGeometry:
        """From a (468, 2|3) MediaPipe face mesh in pixel coordinates."""
        pts = {k: mesh[list(idx), :2].astype(np.float64) for k, idx in MESH_INDEX.items()}
        return FaceGeometry(pts)

    @staticmethod
    def from_json(data: dict[str, list[list[float]]]) -> FaceGeometry:
        missing = [k for k in REQUIRED if k not in data]
        if missing:
            raise ValueError(f"face geometry lacks {missing}")
        return FaceGeometry({k: np.asarray(v, np.float64).reshape(-1, 2) for k, v in data.items()})

    def to_json(self) -> dict[str, list[list[float]]]:
        return {k: np.round(v, 2).tolist() for k, v in self.points.items()}

    def transformed(self, scale: float, offset: tuple[float, float] = (0.0, 0.0)) -> FaceGeometry:
        """Points mapped by p * scale + offset (pixel centres kept consistent)."""
        off = np.asarray(offset, np.float64)
        return FaceGeometry({k: (v + 0.5) * scale - 0.5 + off for k, v in self.points.items()})

    # ---- derived measures
    def eye_center(self, side: str) -> np.ndarray:
        key = f"eye_{side}_center"
        if key in self.points:
            return self.points[key][0]
        return np.concatenate([self.points[f"eye_{side}_upper"], self.points[f"eye_{side}_lower"]]).mean(0)

    @property
    def mouth_center(self) -> np.ndarray:
        return 0.5 * (self.points["lip_inner_upper"][5] + self.points["lip_inner_lower"][5])

    @property
    def mouth_width(self) -> float:
        up = self.points["lip_outer_upper"]
        return float(np.linalg.norm(up[-1] - up[0]))

    @property
    def mouth_gap(self) -> float:
        """Inner-lip gap at the centre of the source mouth (0 for a closed mouth)."""
        return float(np.linalg.norm(self.points["lip_inner_lower"][5] - self.points["lip_inner_upper"][5]))

    @property
    def face_box(self) -> tuple[float, float, float, float]:
        o = self.points["face_oval"]
        return float(o[:, 0].min()), float(o[:, 1].min()), float(o[:, 0].max()), float(o[:, 1].max())
