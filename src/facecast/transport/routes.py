"""HTTP routes of the transport: WebRTC signalling for the Web SDK, and the SDK file itself.

    POST   /_sdk/v0/webrtc            X-Session-Token, {"sdp", "type": "offer"}
           → 200 {"sdp", "type": "answer", "peer_id", "session_id", "video": {...}}
    DELETE /_sdk/v0/webrtc/{peer_id}  X-Session-Token → 204
    GET    /sdk/facecast.js           the Web SDK (ES module)

Errors are JSON `{"detail": message, "code": code, "field": field}`: 401 `invalid_token`
(missing/bad/expired token), 410 `session_ended`, 400 `invalid_request` (naming the field),
429 `limits_exceeded`. Signalling is authenticated by the token alone (no cookies), so these
routes answer CORS for any origin: the SDK runs on the product's own page.

Wiring (the app owns the manager at `app.state.manager`):

    transport = WebRTCTransport(settings)
    app.include_router(transport_router(transport))
    ... on shutdown: await transport.aclose()
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from facecast.errors import (
    FacecastError,
    InvalidRequest,
    InvalidSessionState,
    LimitsExceeded,
    SessionNotFound,
    Unauthorized,
)
from facecast.transport.webrtc import WebRTCTransport

log = logging.getLogger(__name__)

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk"
TOKEN_HEADER = "X-Session-Token"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": f"Content-Type, {TOKEN_HEADER}",
    "Access-Control-Max-Age": "600",
}


def error_response(exc: FacecastError) -> JSONResponse:
    """The transport's HTTP mapping of facecast errors (mirrors facecast.api.errors)."""
    if isinstance(exc, Unauthorized):
        status, code = 401, "invalid_token"
    elif isinstance(exc, InvalidSessionState | SessionNotFound):
        status, code = 410, "session_ended"
    elif isinstance(exc, InvalidRequest):
        status, code = 400, exc.code
    elif isinstance(exc, LimitsExceeded):
        status, code = 429, exc.code
    else:
        status, code = 500, exc.code
    body = {"detail": exc.message, "code": code, "field": exc.field}
    return JSONResponse(body, status_code=status, headers=CORS_HEADERS)


def _token(request: Request) -> str:
    token = request.headers.get(TOKEN_HEADER, "").strip()
    if not token:
        raise Unauthorized(f"missing {TOKEN_HEADER} header", field=TOKEN_HEADER)
    return token


def transport_router(transport: WebRTCTransport) -> APIRouter:
    router = APIRouter()

    @router.options("/_sdk/v0/webrtc", include_in_schema=False)
    @router.options("/_sdk/v0/webrtc/{peer_id}", include_in_schema=False)
    async def preflight() -> Response:
        return Response(status_code=204, headers=CORS_HEADERS)

    @router.post("/_sdk/v0/webrtc", tags=["sdk"])
    async def webrtc_offer(request: Request) -> Response:
        """Join the session named by the token with a WebRTC offer (non-trickle)."""
        try:
            token = _token(request)
            raw = await request.body()
            try:
                body = json.loads(raw)
            except (ValueError, UnicodeDecodeError) as exc:
                raise InvalidRequest("the body must be JSON", field="body") from exc
            answer = await transport.offer(request.app.state.manager, token, body)
        except FacecastError as exc:
            return error_response(exc)
        return JSONResponse(answer, headers=CORS_HEADERS)

    @router.delete("/_sdk/v0/webrtc/{peer_id}", status_code=204, tags=["sdk"])
    async def webrtc_leave(peer_id: str, request: Request) -> Response:
        """Leave: close this peer connection (the session itself lives on)."""
        try:
            await transport.delete(request.app.state.manager, _token(request), peer_id)
        except FacecastError as exc:
            return error_response(exc)
        return Response(status_code=204, headers=CORS_HEADERS)

    @router.get("/sdk/facecast.js", include_in_schema=False)
    async def sdk_js() -> FileResponse:
        return FileResponse(SDK_DIR / "facecast.js", media_type="text/javascript",
                            headers={"Cache-Control": "no-cache",
                                     "Access-Control-Allow-Origin": "*"})

    return router
