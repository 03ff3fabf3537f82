"""Avatars over the API: upload a portrait, list, use, delete; bad uploads are clear 4xx."""

from __future__ import annotations

import io
from importlib import resources

import cv2
import numpy as np

from tests.conftest import AppCtx

CARTESIA = {"type": "cartesia", "agent_id": "a", "access_token": "t"}


def portrait_jpeg() -> bytes:
    png = resources.files("facecast.render").joinpath("assets/default/portrait.png").read_bytes()
    img = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    ok, jpg = cv2.imencode(".jpg", cv2.resize(img, (600, 600)), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpg.tobytes()


async def upload(ctx: AppCtx, data: bytes, name: str = "me") -> object:
    return await ctx.client.post("/api/v1/avatars", headers=ctx.auth,
                                 files={"file": ("me.jpg", io.BytesIO(data), "image/jpeg")},
                                 data={"name": name})


async def test_builtin_avatar_listed(ctx: AppCtx) -> None:
    r = await ctx.client.get("/api/v1/avatars", headers=ctx.auth)
    avatars = r.json()["avatars"]
    assert [a["avatar_id"] for a in avatars] == ["default"]
    assert avatars[0]["builtin"] is True and "default" in avatars[0]["render_models"]
    r = await ctx.client.delete("/api/v1/avatars/default", headers=ctx.auth)
    assert r.status_code == 400 and r.json()["code"] == "avatar_builtin"


async def test_upload_use_delete(ctx: AppCtx) -> None:
    r = await upload(ctx, portrait_jpeg(), name="Portrait")
    assert r.status_code == 201, r.text
    info = r.json()
    avatar_id = info["avatar_id"]
    assert info["name"] == "Portrait" and info["builtin"] is False and info["width"] > 0
    assert "default" in info["render_models"]
    r = await ctx.client.get(f"/api/v1/avatars/{avatar_id}", headers=ctx.auth)
    assert r.status_code == 200
    sid = (await ctx.create_session(avatar_id=avatar_id))["session_id"]
    assert (await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)).json()["avatar_id"] == avatar_id

    r = await ctx.client.delete(f"/api/v1/avatars/{avatar_id}", headers=ctx.auth)
    assert r.status_code == 200
    assert not (ctx.settings.data_dir / "avatars" / avatar_id).exists()
    r = await ctx.client.get(f"/api/v1/avatars/{avatar_id}", headers=ctx.auth)
    assert r.status_code == 410
    r = await ctx.client.post("/api/v1/sessions", headers=ctx.auth,
                              json={"conversation_engine": CARTESIA, "avatar_id": avatar_id})
    assert r.status_code == 410 and r.json()["detail"][0]["loc"] == ["body", "avatar_id"]
    r = await ctx.client.get("/api/v1/avatars/av_unknown", headers=ctx.auth)
    assert r.status_code == 404


async def test_bad_uploads_store_nothing(ctx: AppCtx) -> None:
    blank = cv2.imencode(".png", np.full((400, 400, 3), 200, np.uint8))[1].tobytes()
    cases = [(b"not an image at all", "not_an_image"), (blank, "no_face"), (b"", "not_an_image")]
    for data, code in cases:
        r = await upload(ctx, data)
        assert r.status_code == 400, r.text
        assert r.json()["code"] == code and r.json()["detail"][0]["loc"] == ["body", "file"]
    r = await ctx.client.post("/api/v1/avatars", headers=ctx.auth, data={"name": "x"})
    assert r.status_code == 422
    huge = b"\xff\xd8" + b"0" * (ctx.settings.max_upload_bytes + 100_000)
    r = await upload(ctx, huge)
    assert r.status_code == 413
    r = await ctx.client.get("/api/v1/avatars", headers=ctx.auth)
    assert [a["avatar_id"] for a in r.json()["avatars"]] == ["default"]
    assert list((ctx.settings.data_dir / "avatars").iterdir()) == []
