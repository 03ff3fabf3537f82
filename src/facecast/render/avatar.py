"""Avatar assets: the loaded form the renderer uses, the built-in character, save and load.

An avatar directory holds ``portrait.png`` (square RGB), ``alpha.png`` (the matte for the
transparent background) and ``geometry.json`` (name, source and the face geometry).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from facecast.render.geometry import FaceGeometry
from facecast.render.presets import PRESETS

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "assets"
BUILTIN_DIR = ASSETS / "default"


class AvatarError(Exception):
    """A portrait or avatar directory that cannot be used. `code` is stable, `message` human."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, eq=False)
class Avatar:
    """What a render session needs: a square RGB portrait, its alpha matte, face geometry."""

    name: str
    image: np.ndarray
    alpha: np.ndarray
    geometry: FaceGeometry
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True, eq=False)
class PreparedAvatar:
    """Result of `prepare_avatar`: the avatar plus what preparation measured."""

    avatar: Avatar
    landmarks: np.ndarray | None
    info: dict[str, Any] = field(default_factory=dict)


def avatar_presets(avatar: Avatar) -> list[str]:
    """Presets this avatar can fill without upscaling by more than 1.25x (always "small" and
    "default")."""
    ok = [name for name, p in PRESETS.items()
          if name in ("small", "default") or max(p.width, p.height) <= avatar.size * 1.25]
    return ok


def _write_png(path: Path, img: np.ndarray) -> None:
    data = cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img
    if not cv2.imwrite(str(path), data, [cv2.IMWRITE_PNG_COMPRESSION, 6]):
        raise OSError(f"could not write {path}")


def save_avatar(prepared: PreparedAvatar | Avatar, directory: Path) -> None:
    """Write atomically: everything goes to a temporary directory beside `directory`, which is
    then renamed into place (replacing an older version)."""
    av = prepared.avatar if isinstance(prepared, PreparedAvatar) else prepared
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        _write_png(tmp / "portrait.png", av.image)
        _write_png(tmp / "alpha.png", av.alpha)
        meta = dict(av.meta)
        if isinstance(prepared, PreparedAvatar) and prepared.landmarks is not None:
            np.save(tmp / "landmarks.npy", prepared.landmarks.astype(np.float32))
            meta.setdefault("prepare", prepared.info)
        doc = {"name": av.name, "meta": meta, "geometry": av.geometry.to_json()}
        (tmp / "geometry.json").write_text(json.dumps(doc, indent=1, default=str))
        old = None
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("saved avatar %r to %s", av.name, directory)


def load_avatar(directory: Path) -> Avatar:
    """Load an avatar written by `save_avatar` (or the built-in asset layout)."""
    directory = Path(directory)
    try:
        doc = json.loads((directory / "geometry.json").read_text())
        bgr = cv2.imread(str(directory / "portrait.png"), cv2.IMREAD_COLOR)
        alpha = cv2.imread(str(directory / "alpha.png"), cv2.IMREAD_GRAYSCALE)
        if bgr is None or alpha is None:
            raise ValueError("portrait.png or alpha.png missing or unreadable")
        geometry = FaceGeometry.from_json(doc["geometry"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
        raise AvatarError("invalid_avatar", f"cannot load avatar from {directory}: {exc}") from exc
    if bgr.shape[0] != bgr.shape[1] or alpha.shape != bgr.shape[:2]:
        raise AvatarError("invalid_avatar", f"{directory}: portrait must be square and match alpha")
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return Avatar(str(doc.get("name", directory.name)), rgb, alpha, geometry, dict(doc.get("meta", {})))


@functools.cache
def builtin_avatar() -> Avatar:
    """The built-in illustrated character (drawn by `facecast.render.character`)."""
    return load_avatar(BUILTIN_DIR)
