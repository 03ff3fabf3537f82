"""The one place where errors become HTTP responses.

Every error body has the same shape: `{"code", "message", "detail": [{"loc", "msg", "type"}]}`
(`detail` is FastAPI's validation list for 422s). Submitted values are never echoed back, so a
secret in a bad request cannot leak into a response or a log.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from facecast import errors as e

log = logging.getLogger(__name__)

STATUS: list[tuple[type[e.FacecastError], int]] = [
    (e.InvalidRequest, 400),
    (e.Unauthorized, 401),
    (e.SessionNotFound, 404),
    (e.AvatarNotFound, 404),
    (e.AvatarGone, 410),
    (e.InvalidSessionState, 409),
    (e.LimitsExceeded, 429),
    (e.EngineConnectionError, 502),
]


def status_for(exc: e.FacecastError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def error_response(status: int, code: str, message: str, *, field: str | None = None,
                   loc_root: str = "body", detail: list[dict[str, Any]] | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    if detail is None:
        loc: list[str | int] = [loc_root, *field.split(".")] if field else []
        detail = [{"loc": loc, "msg": message, "type": code}]
    return JSONResponse({"code": code, "message": message, "detail": detail},
                        status_code=status, headers=headers)


def _clean_validation_errors(errors: list[Any]) -> list[dict[str, Any]]:
    return [{"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")),
             "type": str(err.get("type", "value_error"))} for err in errors]


def install(app: FastAPI) -> None:
    @app.exception_handler(e.FacecastError)
    async def _facecast(request: Request, exc: e.FacecastError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("request failed: %s %s: %s", request.method, request.url.path, exc.message)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        loc_root = exc.extra.get("loc_root") or (
            "path" if exc.field is not None and exc.field in request.path_params else "body")
        return error_response(status, exc.code, exc.message, field=exc.field, loc_root=loc_root,
                              headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = _clean_validation_errors(list(exc.errors()))
        if any(item["type"] == "json_invalid" for item in detail):
            # not JSON at all: the platform's "400 invalid payload" (schema errors stay 422)
            return error_response(400, "invalid_payload", "the request body is not valid JSON",
                                  detail=detail)
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"][1:]) or "request"
        return error_response(422, "validation_error", f"{where}: {first['msg']}", detail=detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail),
                              headers=dict(exc.headers) if exc.headers else None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal server error")
