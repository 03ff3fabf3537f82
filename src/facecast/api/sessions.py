"""`/api/v1/sessions`: create, read, list, end, and text tasks."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from facecast.api.deps import ApiKeyDep, ServicesDep
from facecast.api.models import (
    CreateSessionRequest,
    CreateSessionResponse,
    CreateTaskRequest,
    CreateTaskResponse,
    ErrorBody,
    SessionInfo,
    SessionList,
    TaskInfo,
)
from facecast.engines.config import TextEchoEngineConfig
from facecast.errors import AvatarNotFound, InvalidRequest
from facecast.render.presets import DEFAULT_PRESET, PRESETS
from facecast.sessions.db import SessionRow, TaskRow
from facecast.sessions.manager import SessionManager, SessionSpec
from facecast.sessions.state import EndReason, SessionState

router = APIRouter(prefix="/api/v1/sessions", tags=["sessions"])

SessionId = Annotated[str, Path(min_length=1, max_length=64)]
_errors: dict[int | str, dict[str, Any]] = {code: {"model": ErrorBody} for code in (400, 401, 404, 409, 410, 429)}


def session_info(row: SessionRow, tasks: list[TaskRow], manager: SessionManager) -> SessionInfo:
    live = manager.live(row.id)
    return SessionInfo(
        session_id=row.id, state=row.state,  # type: ignore[arg-type]
        created_at=row.created_at, started_at=row.started_at, ended_at=row.ended_at,
        end_reason=row.end_reason, end_message=row.end_message, avatar_id=row.avatar_id,
        render_model=row.render_model, background=row.background, conversation_engine=row.engine,
        user_absent_timeout=row.user_absent_timeout, max_duration=row.max_duration,
        billed_seconds=row.billed_seconds, users_connected=len(live.peers) if live else 0,
        tasks=[TaskInfo(task_id=t.id, text=t.text, state=t.state, created_at=t.created_at,
                        updated_at=t.updated_at) for t in tasks])


@router.post("", response_model=CreateSessionResponse, responses=_errors)
async def create_session(body: CreateSessionRequest, services: ServicesDep,
                         key: ApiKeyDep) -> CreateSessionResponse:
    """Create a session; hand `token` to the web page (it only works with the Web SDK)."""
    try:
        await services.avatars.get_row(body.avatar_id)
    except AvatarNotFound:
        raise InvalidRequest(f"unknown avatar_id {body.avatar_id!r}", code="unknown_avatar",
                             field="avatar_id") from None
    render_model = body.render_model or DEFAULT_PRESET
    if render_model not in PRESETS:
        raise InvalidRequest(f"unknown render_model {render_model!r}; see GET /api/v1/render-models",
                             code="unknown_render_model", field="render_model")
    if render_model not in await services.avatars.presets_for(body.avatar_id):
        raise InvalidRequest(f"render_model {render_model!r} is not available for this avatar",
                             code="invalid_render_model", field="render_model")
    engine = body.conversation_engine
    if isinstance(engine, TextEchoEngineConfig):
        from facecast.media.tts import validate_voice

        if not await asyncio.to_thread(validate_voice, engine.tts.voice):  # runs espeak-ng
            raise InvalidRequest(f"unknown TTS voice {engine.tts.voice!r}", code="unknown_voice",
                                 field="conversation_engine.tts.voice")
    spec = SessionSpec(avatar_id=body.avatar_id, render_model=render_model,
                       background=body.background, engine=engine,
                       user_absent_timeout=body.user_absent_timeout, max_duration=body.max_duration)
    session_id, token = await services.manager.create(spec, api_key_id=key.id)
    return CreateSessionResponse(session_id=session_id, token=token)


@router.get("", response_model=SessionList, responses=_errors)
async def list_sessions(services: ServicesDep, _key: ApiKeyDep,
                        state: SessionState | None = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 100,
                        offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0) -> SessionList:
    rows = await services.manager.list_rows(state, limit, offset)
    return SessionList(sessions=[session_info(r, [], services.manager) for r in rows],
                       limit=limit, offset=offset)


@router.get("/{session_id}", response_model=SessionInfo, responses=_errors)
async def get_session(session_id: SessionId, services: ServicesDep, _key: ApiKeyDep) -> SessionInfo:
    row, tasks = await services.manager.get_row(session_id)
    return session_info(row, tasks, services.manager)


@router.delete("/{session_id}", response_model=SessionInfo, responses=_errors)
async def delete_session(session_id: SessionId, services: ServicesDep, _key: ApiKeyDep) -> SessionInfo:
    """End the session at once, even mid-speech (`termination_command_received`).

    Deleting a session that has already ended is a no-op: 200 with its unchanged record.
    """
    await services.manager.get_row(session_id)  # 404 for unknown ids
    await services.manager.end(session_id, EndReason.TERMINATION_COMMAND_RECEIVED)
    row, tasks = await services.manager.get_row(session_id)
    return session_info(row, tasks, services.manager)


@router.post("/{session_id}/tasks", response_model=CreateTaskResponse, responses=_errors)
async def create_task(session_id: SessionId, body: CreateTaskRequest, services: ServicesDep,
                      _key: ApiKeyDep) -> CreateTaskResponse:
    """Queue text for the avatar to say (text-echo); other engines record it only."""
    task_id = await services.manager.add_task(session_id, body.text)
    return CreateTaskResponse(task_id=task_id)
