"""Request and response bodies of the REST API (field names are part of the compat contract)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from facecast.engines.config import EngineConfig


class CreateSessionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    avatar_id: str = Field(default="default", min_length=1, max_length=64,
                           description="an avatar id; the built-in character by default")
    conversation_engine: EngineConfig
    background: Literal["default", "transparent"] = "default"
    render_model: str | None = Field(
        default=None, min_length=1, max_length=32,
        validation_alias=AliasChoices("render_model", "model"),
        description="render preset name (alias `model`); see GET /api/v1/render-models")
    user_absent_timeout: int = Field(default=60, ge=10, le=86400,
                                     description="seconds; at most 86400 (a day)")
    max_duration: int = Field(default=3600, ge=60, le=86400)

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        """An optional field sent as `null` takes its default, as if it were left out."""
        if isinstance(data, dict):
            optional = ("avatar_id", "background", "render_model", "model",
                        "user_absent_timeout", "max_duration")
            data = {k: v for k, v in data.items() if not (v is None and k in optional)}
        return data


class CreateSessionResponse(BaseModel):
    session_id: str
    token: str


class CreateTaskRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=5000, pattern=r"^[^\x00]*$",
                      description="what the avatar should say (no NUL characters, not blank)")

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the text has nothing to say (only whitespace)")
        return value


class CreateTaskResponse(BaseModel):
    task_id: str


class TaskInfo(BaseModel):
    task_id: str
    text: str
    state: str
    created_at: datetime
    updated_at: datetime


class SessionInfo(BaseModel):
    session_id: str
    state: Literal["created", "active", "ended"]
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    end_message: str | None
    avatar_id: str
    render_model: str
    background: str
    conversation_engine: dict[str, Any] = Field(description="engine type and settings, without secrets")
    user_absent_timeout: int
    max_duration: int
    billed_seconds: int = Field(description="seconds from the first user join to the end, rounded up")
    users_connected: int
    tasks: list[TaskInfo] = Field(default_factory=list)


class SessionList(BaseModel):
    sessions: list[SessionInfo]
    limit: int
    offset: int


class AvatarInfo(BaseModel):
    avatar_id: str
    name: str
    builtin: bool
    width: int
    height: int
    created_at: datetime
    render_models: list[str]


class AvatarList(BaseModel):
    avatars: list[AvatarInfo]


class RenderModelInfo(BaseModel):
    name: str
    width: int
    height: int
    fps: int
    default: bool


class RenderModelList(BaseModel):
    render_models: list[RenderModelInfo]


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    code: str
    message: str
    detail: list[ErrorItem]
