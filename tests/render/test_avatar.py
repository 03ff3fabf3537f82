"""Avatars: the built-in character, user portraits through the TFLite face mesh, the alpha
matte, atomic save/load, and clear refusals for bad uploads."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from facecast.render import (
    SAMPLES_PER_FRAME,
    AvatarError,
    avatar_presets,
    builtin_avatar,
    load_avatar,
    open_render_session,
    prepare_avatar,
    save_avatar,
)
from facecast.render.matte import compute_matte


def png(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def jpeg(rgb: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
    assert ok
    return data.tobytes()


def portrait(size: int = 512) -> np.ndarray:
    return cv2.resize(builtin_avatar().image, (size, size), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def prepared():  # type: ignore[no-untyped-def]
    return prepare_avatar(jpeg(portrait(640)))


def test_builtin_avatar_is_complete() -> None:
    av = builtin_avatar()
    assert av is builtin_avatar()  # cached
    assert av.image.shape == (1024, 1024, 3) and av.alpha.shape == (1024, 1024)
    g = av.geometry
    assert g.eye_center("r")[0] < g.eye_center("l")[0] < g.mouth_center[0] + g.mouth_width
    assert g.eye_center("r")[1] < g["nose_tip"][0, 1] < g.mouth_center[1]
    assert avatar_presets(av) == ["small", "default", "large"]


def test_alpha_matte_is_sane() -> None:
    av = builtin_avatar()
    a = av.alpha
    assert a[0, 0] == 0 and a[0, -1] == 0 and a[-1, a.shape[1] // 2] == 255
    cx, cy = av.geometry.mouth_center.astype(int)
    assert a[cy, cx] == 255
    soft = ((a > 10) & (a < 245)).mean()
    assert soft < 0.03, "mostly opaque or transparent, soft only at the edges"
    # GrabCut seeded from the geometry recovers the drawn matte
    small = cv2.resize(av.image, (512, 512), interpolation=cv2.INTER_AREA)
    est = compute_matte(small, av.geometry.transformed(0.5)) > 127
    ref = cv2.resize(a, (512, 512), interpolation=cv2.INTER_AREA) > 127
    iou = (est & ref).sum() / (est | ref).sum()
    assert iou > 0.9, iou


def test_prepare_finds_the_face_and_crops_a_portrait(prepared) -> None:  # type: ignore[no-untyped-def]
    av = prepared.avatar
    assert av.image.shape[0] == av.image.shape[1] >= 256
    assert prepared.landmarks.shape == (468, 3)
    g = av.geometry
    size = av.size
    # the crop puts the face in the middle, upright, at the built-in framing
    assert abs(g.mouth_center[0] - size / 2) < 0.05 * size
    er, el = g.eye_center("r"), g.eye_center("l")
    assert abs(er[1] - el[1]) < 0.01 * size
    assert er[1] < g.mouth_center[1]
    assert av.alpha[0, 0] == 0 and av.alpha[int(g.mouth_center[1]), int(g.mouth_center[0])] == 255
    assert prepared.info["detection_score"] > 0.7


def test_prepared_avatar_round_trips_and_renders(prepared, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    target = tmp_path / "avatars" / "a1"
    save_avatar(prepared, target)
    assert sorted(p.name for p in target.iterdir()) == ["alpha.png", "geometry.json", "landmarks.npy", "portrait.png"]
    assert [p.name for p in target.parent.iterdir()] == ["a1"]  # no temp dirs left
    loaded = load_avatar(target)
    assert np.array_equal(loaded.image, prepared.avatar.image)
    assert np.allclose(loaded.geometry.mouth_center, prepared.avatar.geometry.mouth_center, atol=0.01)
    save_avatar(prepared, target)  # replacing works too
    s = open_render_session(loaded, "small")
    f = s.render(np.zeros(SAMPLES_PER_FRAME, np.int16), np.zeros(0, np.int16))
    assert f.shape == (256, 256, 3)


def test_failed_save_leaves_nothing_behind(prepared, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import facecast.render.avatar as avatar_mod

    calls = {"n": 0}
    real = avatar_mod._write_png

    def flaky(path: Path, img: np.ndarray) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        real(path, img)

    monkeypatch.setattr(avatar_mod, "_write_png", flaky)
    with pytest.raises(OSError):
        save_avatar(prepared, tmp_path / "a2")
    assert list(tmp_path.iterdir()) == []


def test_load_rejects_a_broken_directory(tmp_path: Path) -> None:
    (tmp_path / "geometry.json").write_text("{}")
    with pytest.raises(AvatarError) as e:
        load_avatar(tmp_path)
    assert e.value.code == "invalid_avatar"


@pytest.mark.parametrize(("data", "code"), [
    (b"", "not_an_image"),
    (b"hello, this is not an image at all" * 10, "not_an_image"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), "not_an_image"),
])
def test_not_an_image(data: bytes, code: str) -> None:
    with pytest.raises(AvatarError) as e:
        prepare_avatar(data)
    assert e.value.code == code and e.value.message


def test_file_too_large() -> None:
    with pytest.raises(AvatarError) as e:
        prepare_avatar(png(portrait(256)), max_bytes=1000)
    assert e.value.code == "file_too_large"


def test_no_face() -> None:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:400, 0:400]
    gradient = np.dstack([xx * 0.5, yy * 0.5, 120 + 0 * xx]).astype(np.uint8)
    for img in (gradient, rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)):
        with pytest.raises(AvatarError) as e:
            prepare_avatar(png(img))
        assert e.value.code == "no_face"


def test_multiple_faces() -> None:
    two = np.concatenate([portrait(400), portrait(400)], axis=1)
    with pytest.raises(AvatarError) as e:
        prepare_avatar(jpeg(two))
    assert e.value.code == "multiple_faces"


def test_face_too_small() -> None:
    canvas = np.full((900, 900, 3), 200, np.uint8)
    canvas[400:500, 400:500] = portrait(100)
    with pytest.raises(AvatarError) as e:
        prepare_avatar(jpeg(canvas))
    assert e.value.code in ("face_too_small", "no_face")
    assert e.value.code == "face_too_small", "the full-range detector should still see it"
