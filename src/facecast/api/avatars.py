"""`/api/v1/avatars` and `/api/v1/render-models`."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Path, UploadFile

from facecast.api.deps import ApiKeyDep, ServicesDep
from facecast.api.models import AvatarInfo, AvatarList, ErrorBody, RenderModelInfo, RenderModelList
from facecast.errors import InvalidRequest
from facecast.render.presets import DEFAULT_PRESET, PRESETS
from facecast.sessions.db import AvatarRow

router = APIRouter(prefix="/api/v1", tags=["avatars"])
_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 410, 413)}
AvatarId = Annotated[str, Path(min_length=1, max_length=64)]


async def _info(row: AvatarRow, services: ServicesDep) -> AvatarInfo:
    return AvatarInfo(avatar_id=row.id, name=row.name, builtin=row.builtin, width=row.width,
                      height=row.height, created_at=row.created_at,
                      render_models=await services.avatars.presets_for(row.id))


@router.get("/render-models", response_model=RenderModelList, responses=_errors)
async def list_render_models(_key: ApiKeyDep) -> RenderModelList:
    return RenderModelList(render_models=[
        RenderModelInfo(name=p.name, width=p.width, height=p.height, fps=p.fps,
                        default=p.name == DEFAULT_PRESET) for p in PRESETS.values()])


@router.post("/avatars", response_model=AvatarInfo, status_code=201, responses=_errors)
async def create_avatar(services: ServicesDep, _key: ApiKeyDep,
                        file: Annotated[UploadFile, File(description="a portrait photo (JPEG/PNG/WebP)")],
                        name: Annotated[str, Form(max_length=200)] = "") -> AvatarInfo:
    """Make an avatar from one portrait with exactly one clearly visible face."""
    limit = services.settings.max_upload_bytes
    data = await file.read(limit + 1)
    if len(data) > limit:
        raise InvalidRequest(f"file larger than {limit} bytes", code="file_too_large", field="file")
    if not data:
        raise InvalidRequest("empty file", code="not_an_image", field="file")
    label = (name or file.filename or "").replace("\x00", "")[:200]
    row = await services.avatars.create(data, label, limit)
    return await _info(row, services)


@router.get("/avatars", response_model=AvatarList, responses=_errors)
async def list_avatars(services: ServicesDep, _key: ApiKeyDep) -> AvatarList:
    return AvatarList(avatars=[await _info(r, services) for r in await services.avatars.list_rows()])


@router.get("/avatars/{avatar_id}", response_model=AvatarInfo, responses=_errors)
async def get_avatar(avatar_id: AvatarId, services: ServicesDep, _key: ApiKeyDep) -> AvatarInfo:
    return await _info(await services.avatars.get_row(avatar_id), services)


@router.delete("/avatars/{avatar_id}", responses=_errors)
async def delete_avatar(avatar_id: AvatarId, services: ServicesDep, _key: ApiKeyDep) -> dict[str, object]:
    """Delete an uploaded avatar; sessions that ask for it afterwards get 410."""
    await services.avatars.delete(avatar_id)
    return {"avatar_id": avatar_id, "deleted": True}
