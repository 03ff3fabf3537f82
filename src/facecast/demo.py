"""The demo: a page with a talking avatar, and the few lines a product backend needs.

`demo_router(api_base, api_key)` serves:

    GET  /demo                      the page (sdk/demo.html, using /sdk/facecast.js)
    POST /demo/session              "our product backend": creates a facecast session through the
                                    public REST API and hands the page its short-lived token
    POST /demo/session/{id}/end     ends it (DELETE /api/v1/sessions/{id})

The backend half is the integration example: it holds the API key and the agent credential,
the browser only ever sees the session token.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, HTTPException
from fastapi.responses import FileResponse

log = logging.getLogger(__name__)

PAGE = Path(__file__).resolve().parent / "sdk" / "demo.html"

# The stand-in Cartesia agent accepts any credential; a real backend mints a Cartesia access
# token for its own agent here.
DEMO_ENGINE = {"type": "cartesia", "agent_id": "demo", "access_token": "demo"}


def demo_router(api_base: str, api_key: str) -> APIRouter:
    router = APIRouter(prefix="/demo", tags=["demo"])
    api = api_base.rstrip("/") + "/api/v1"
    auth = {"Authorization": f"Bearer {api_key}"}

    @router.get("", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(PAGE, media_type="text/html", headers={"Cache-Control": "no-cache"})

    @router.post("/session")
    async def create_session(background: str = "default") -> dict[str, Any]:
        """What a product backend does: create the session, give the page its token."""
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.post(f"{api}/sessions", headers=auth, json={
                "conversation_engine": DEMO_ENGINE,
                "background": background,
                "user_absent_timeout": 30,
            })
        if r.status_code != 200:
            log.warning("session create failed: HTTP %d", r.status_code)
            raise HTTPException(502, f"facecast refused the session (HTTP {r.status_code})")
        session = r.json()
        return {"session_id": session["session_id"], "token": session["token"]}

    @router.post("/session/{session_id}/end", status_code=204)
    async def end_session(session_id: str) -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            r = await http.delete(f"{api}/sessions/{session_id}", headers=auth)
        if r.status_code not in (200, 204, 404, 409):
            raise HTTPException(502, f"facecast refused (HTTP {r.status_code})")

    return router
