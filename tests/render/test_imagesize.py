"""Header-only image sizes, and decompression bombs refused before decoding."""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pytest

from facecast.render import AvatarError, prepare_avatar
from facecast.render.imagesize import UnknownImageFormat, image_size


@pytest.mark.parametrize("ext", [".png", ".jpg", ".webp", ".bmp"])
@pytest.mark.parametrize(("w", "h"), [(37, 21), (640, 480)])
def test_sizes_match_what_opencv_decodes(ext: str, w: int, h: int) -> None:
    img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
    ok, data = cv2.imencode(ext, img)
    assert ok
    assert image_size(data.tobytes()) == (w, h)


def test_lossless_webp() -> None:
    img = np.zeros((33, 65, 3), np.uint8)
    ok, data = cv2.imencode(".webp", img, [cv2.IMWRITE_WEBP_QUALITY, 101])
    assert ok and image_size(data.tobytes()) == (65, 33)


def test_unknown_formats() -> None:
    for data in (b"GIF89a....", b"not an image", b""):
        with pytest.raises(UnknownImageFormat):
            image_size(data)


def png_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width * 3 + 1) * 64)   # a little real data; declares far more
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    data = png_bomb(20_000, 20_000)
    assert len(data) < 100_000

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("the image was decoded")

    monkeypatch.setattr(cv2, "imdecode", no_decode)
    with pytest.raises(AvatarError) as err:
        prepare_avatar(data)
    assert err.value.code == "file_too_large"   # from the header alone
