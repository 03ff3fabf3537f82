"""`prepare_avatar`: a user portrait (image bytes) in, a ready `PreparedAvatar` out.

Decode, find exactly one usable face, fit the 468-point mesh, crop an upright square
head-and-shoulders portrait around it, derive the face geometry and the alpha matte.
Every refusal is an `AvatarError` with a stable code.
"""

from __future__ import annotations

import logging
import math
import time

import cv2
import numpy as np

from facecast.render.avatar import Avatar, AvatarError, PreparedAvatar
from facecast.render.geometry import FaceGeometry
from facecast.render.imagesize import UnknownImageFormat, image_size
from facecast.render.landmarks import ModelsUnavailable, face_mesher
from facecast.render.matte import compute_matte

logger = logging.getLogger(__name__)

MAX_PIXELS = 40_000_000
MIN_FACE_PX = 64  # detector box width (about eye-to-eye x 2) in source pixels
MIN_MOUTH_PX = 20
SECOND_FACE_RATIO = 0.4  # another face at least this wide (relative) counts as a second face
MAX_SIZE = 1024  # portrait side we keep
MIN_SIZE = 256
FACE_FRACTION = 0.54  # face oval height / portrait side (the built-in character's framing)
FACE_CENTER_Y = 0.48


def _decode(image_bytes: bytes, max_bytes: int) -> np.ndarray:
    if not isinstance(image_bytes, bytes | bytearray | memoryview):
        raise AvatarError("not_an_image", "expected the image file's bytes")
    if len(image_bytes) > max_bytes:
        raise AvatarError("file_too_large",
                          f"the image is {len(image_bytes)} bytes; the limit is {max_bytes} bytes")
    if len(image_bytes) == 0:
        raise AvatarError("not_an_image", "the file is empty")
    try:
        w, h = image_size(bytes(image_bytes))
    except UnknownImageFormat as exc:
        raise AvatarError("not_an_image", f"{exc}") from None
    except ValueError as exc:
        raise AvatarError("not_an_image", f"the image header is unreadable: {exc}") from None
    if w * h > MAX_PIXELS:  # before decoding: a small file may declare a huge image
        raise AvatarError("file_too_large", f"the image is {w}x{h}; at most {MAX_PIXELS} pixels")
    buf = np.frombuffer(bytes(image_bytes), np.uint8)
    try:
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)  # applies the EXIF orientation
    except cv2.error as exc:
        raise AvatarError("not_an_image", f"the file could not be decoded as an image: {exc}") from exc
    if bgr is None or bgr.ndim != 3 or bgr.shape[0] < 8 or bgr.shape[1] < 8:
        raise AvatarError("not_an_image", "the file is not a readable image (JPEG, PNG, WebP, ...)")
    if bgr.shape[0] * bgr.shape[1] > MAX_PIXELS:
        raise AvatarError("file_too_large", f"the image has more than {MAX_PIXELS} pixels")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def prepare_avatar(image_bytes: bytes, *, max_bytes: int = 10_000_000, name: str = "portrait") -> PreparedAvatar:
    """Build an avatar from a portrait photo or drawing with exactly one face."""
    t0 = time.perf_counter()
    rgb = _decode(image_bytes, max_bytes)
    h, w = rgb.shape[:2]
    try:
        mesher = face_mesher()
    except ModelsUnavailable as exc:
        raise AvatarError("landmarker_unavailable", str(exc)) from exc
    t1 = time.perf_counter()
    dets = mesher.detect(rgb)
    if not dets:
        raise AvatarError("no_face", "no face was found in the image")
    main = max(dets, key=lambda d: d.width * d.score)
    others = [d for d in dets if d is not main and d.width >= SECOND_FACE_RATIO * main.width]
    if others:
        raise AvatarError("multiple_faces",
                          f"{len(others) + 1} faces were found; use a portrait with exactly one face")
    if main.width < MIN_FACE_PX:
        raise AvatarError("face_too_small",
                          f"the face is {main.width:.0f} px wide; at least {MIN_FACE_PX} px is needed")
    mesh, conf = mesher.mesh(rgb, main)
    if conf < 0.5:
        raise AvatarError("no_face", f"face landmarks could not be fitted (confidence {conf:.2f})")
    geom_src = FaceGeometry.from_mesh(mesh)
    if geom_src.mouth_width < MIN_MOUTH_PX:
        raise AvatarError("face_too_small", f"the mouth is {geom_src.mouth_width:.0f} px wide; "
                          f"at least {MIN_MOUTH_PX} px is needed")
    t2 = time.perf_counter()
    # upright square crop: eye line horizontal, face at the built-in character's framing
    er, el = geom_src.eye_center("r"), geom_src.eye_center("l")
    angle = math.atan2(el[1] - er[1], el[0] - er[0])
    c, s = math.cos(angle), math.sin(angle)
    rot = np.array([[c, s], [-s, c]])  # image -> upright
    up = (mesh[:, :2] - mesh[:, :2].mean(0)) @ rot.T
    oval = up[list(range(468))][[10, 152]]
    face_h = float(np.linalg.norm(oval[1] - oval[0])) * 1.06
    side_src = face_h / FACE_FRACTION
    out = int(min(MAX_SIZE, max(MIN_SIZE, round(side_src))))
    k = out / side_src
    ux = 0.5 * (up[234, 0] + up[454, 0])
    uy = 0.5 * (up[10, 1] + up[152, 1])
    # dst = k * (R (p - mean) - (ux, uy)) + (out/2, FACE_CENTER_Y * out)
    m = np.zeros((2, 3))
    m[:, :2] = k * rot
    m[:, 2] = -k * rot @ mesh[:, :2].mean(0) - k * np.array([ux, uy]) + [out / 2, FACE_CENTER_Y * out]
    interp = cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC
    portrait = cv2.warpAffine(rgb, m, (out, out), flags=interp, borderMode=cv2.BORDER_REPLICATE)
    lm = np.concatenate([mesh[:, :2] @ m[:, :2].T + m[:, 2], mesh[:, 2:3] * k], 1)
    geom = FaceGeometry.from_mesh(lm)
    t3 = time.perf_counter()
    alpha = compute_matte(portrait, geom)
    t4 = time.perf_counter()
    info = {
        "source_size": [w, h], "face_box": [round(v, 1) for v in main.box],
        "detection_score": round(main.score, 3), "mesh_confidence": round(conf, 3),
        "upscaled": k > 1.0, "roll_deg": round(math.degrees(angle), 2),
        "ms": {"decode": round((t1 - t0) * 1e3, 1), "landmarks": round((t2 - t1) * 1e3, 1),
               "crop": round((t3 - t2) * 1e3, 1), "matte": round((t4 - t3) * 1e3, 1)},
    }
    avatar = Avatar(name, portrait, alpha, geom, {"source": "prepare_avatar", "prepare": info})
    logger.info("prepared avatar %r: %dx%d face %.0f px, %.0f ms", name, out, out, main.width,
                (t4 - t0) * 1e3)
    return PreparedAvatar(avatar, lm.astype(np.float32), info)
