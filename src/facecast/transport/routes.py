"""HTTP routes of the transport: WebRTC signalling for the Web SDK, and the SDK file itself.

    POST   /_sdk/v0/webrtc            X-Session-Token, {"sdp", "type": "offer"}
           → 200 {"sdp", "type": "answer", "peer_id", "session_id", "video": {...}}
    DELETE /_sdk/v0/webrtc/{peer_id}  X-Session-Token → 204
    GET    /_sdk/v0/config            X-Session-Token → 200 {"ice_servers": [RTCIceServer...]}
    GET    /sdk/facecast.js           the Web SDK (ES module)

Errors use the API's one mapping (`facecast.api.errors`): `{"code", "message", "detail"}` with
401 (missing/bad/expired token), 409 `session_ended`, 400 `invalid_request` naming the field in
`detail[0].loc`, 429 `limits_exceeded`. Signalling is authenticated by the token alone (no
cookies), so these routes (and the SDK file) answer CORS for any origin: the SDK runs on the
product's own page.

Wiring: `facecast.api.app` includes the module-level `router`, which creates one
`WebRTCTransport` per app on first use from `app.state.services.settings` and keeps it at
`app.state.webrtc`. Tests and embedders can build their own with `transport_router(transport)`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from facecast.api.errors import error_response as api_error_response
from facecast.api.errors import status_for
from facecast.errors import FacecastError, InvalidRequest, Unauthorized
from facecast.transport.webrtc import WebRTCTransport

log = logging.getLogger(__name__)

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk"
TOKEN_HEADER = "X-Session-Token"
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, DELETE, OPTIONS",
    "Access-Control-Allow-Headers": f"Content-Type, {TOKEN_HEADER}",
    "Access-Control-Max-Age": "600",
}


def error_response(exc: FacecastError) -> JSONResponse:
    """The API's error mapping and body, plus CORS headers so a cross-origin page can read it."""
    return api_error_response(status_for(exc), exc.code, exc.message, field=exc.field,
                              loc_root="header" if exc.field == TOKEN_HEADER else "body",
                              headers=CORS_HEADERS)


def _token(request: Request) -> str:
    token = request.headers.get(TOKEN_HEADER, "").strip()
    if not token:
        raise Unauthorized(f"missing {TOKEN_HEADER} header", code="invalid_token",
                           field=TOKEN_HEADER)
    return token


def transport_router(transport: WebRTCTransport | Callable[[Request], WebRTCTransport]
                     ) -> APIRouter:
    """The signalling routes bound to `transport` (or to a function finding it per request)."""
    get = transport if callable(transport) else (lambda _request: transport)
    router = APIRouter()

    @router.options("/_sdk/v0/webrtc", include_in_schema=False)
    @router.options("/_sdk/v0/webrtc/{peer_id}", include_in_schema=False)
    @router.options("/_sdk/v0/config", include_in_schema=False)
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
            answer = await get(request).offer(request.app.state.manager, token, body)
        except FacecastError as exc:
            return error_response(exc)
        return JSONResponse(answer, headers=CORS_HEADERS)

    @router.get("/_sdk/v0/config", tags=["sdk"])
    async def sdk_config(request: Request) -> Response:
        """What the browser needs before its offer: the STUN/TURN servers the server uses
        (`FACECAST_ICE_SERVERS`), so a page behind NAT reaches a server behind NAT."""
        try:
            request.app.state.manager.verify_token(_token(request))
            ice_servers = get(request).browser_ice_servers
        except FacecastError as exc:
            return error_response(exc)
        return JSONResponse({"ice_servers": ice_servers}, headers=CORS_HEADERS)

    @router.delete("/_sdk/v0/webrtc/{peer_id}", status_code=204, tags=["sdk"])
    async def webrtc_leave(peer_id: str, request: Request) -> Response:
        """Leave: close this peer connection (the session itself lives on)."""
        try:
            await get(request).delete(request.app.state.manager, _token(request), peer_id)
        except FacecastError as exc:
            return error_response(exc)
        return Response(status_code=204, headers=CORS_HEADERS)

    @router.get("/sdk/facecast.js", include_in_schema=False)
    async def sdk_js() -> FileResponse:
        return FileResponse(SDK_DIR / "facecast.js", media_type="text/javascript",
                            headers={"Cache-Control": "no-cache",
                                     "Access-Control-Allow-Origin": "*"})

    return router


def app_transport(request: Request) -> WebRTCTransport:
    """The app's transport, created on first use from the app's settings."""
    state = request.app.state
    transport: WebRTCTransport | None = getattr(state, "webrtc", None)
    if transport is None:
        services = getattr(state, "services", None)
        settings = getattr(services, "settings", None) or getattr(state, "settings", None)
        if settings is None:
            raise FacecastError("the WebRTC transport has no settings (app.state.services)")
        transport = WebRTCTransport(settings)
        state.webrtc = transport
    return transport


router = transport_router(app_transport)
