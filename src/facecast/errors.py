"""One small exception tree. HTTP mapping lives in exactly one place: `facecast.api.errors`."""

from __future__ import annotations

from typing import Any


class FacecastError(Exception):
    """Base of every error facecast raises on purpose.

    `code` is a stable machine-readable string (it reaches API clients and the Web SDK);
    `field` names the request field at fault, when there is one.
    """

    code = "internal_error"

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.extra = extra or {}


class InvalidRequest(FacecastError):
    code = "invalid_request"


class Unauthorized(FacecastError):
    code = "unauthorized"


class SessionNotFound(FacecastError):
    code = "session_not_found"


class InvalidSessionState(FacecastError):
    code = "invalid_session_state"


class LimitsExceeded(FacecastError):
    code = "limits_exceeded"


class AvatarNotFound(FacecastError):
    code = "avatar_not_found"


class AvatarGone(FacecastError):
    code = "avatar_gone"


class EngineConnectionError(FacecastError):
    """The conversation engine could not be reached, refused us, or broke the protocol."""

    code = "engine_error"


class RendererError(FacecastError):
    code = "renderer_error"


class ConfigError(FacecastError):
    code = "config_error"
