"""`facecast demo`: the server, the local stand-in Cartesia agent and the demo page, no keys needed.

Everything listens on this machine only. The demo page's backend (`facecast.demo`) creates its
session through the real REST API with a freshly created dev key, as a product backend would.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from facecast.config import Settings
from facecast.sessions.db import Database
from facecast.sessions.keys import create_api_key

log = logging.getLogger(__name__)


async def _dev_key(settings: Settings) -> str:
    from facecast.clock import SystemClock

    db = Database(settings.database_url)
    try:
        await db.create_all()
        key, _ = await create_api_key(db, "demo (dev key)", SystemClock().now())
        return key
    finally:
        await db.close()


async def serve_demo(settings: Settings, host: str, port: int, agent_port: int = 0) -> None:
    from facecast.api.app import create_app
    from facecast.demo import demo_router
    from facecast.testing.cartesia_agent import CartesiaStandIn

    async with CartesiaStandIn(host="127.0.0.1", port=agent_port) as agent:
        settings = settings.model_copy(update={
            "cartesia_url": agent.url, "webrtc_loopback": True, "host": host, "port": port})
        key = await _dev_key(settings)
        app = create_app(settings)
        api_base = f"http://127.0.0.1:{port}"
        app.include_router(demo_router(api_base=api_base, api_key=key))
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None))
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        print(f"\n  facecast demo: open http://{shown}:{port}/demo in a browser (Chrome, Firefox)\n"
              f"  stand-in Cartesia agent: {agent.url} (greets, then repeats what you say)\n"
              f"  dev API key (shown once): {key}\n"
              f"  try: curl -H 'Authorization: Bearer {key}' {api_base}/api/v1/sessions\n", flush=True)
        await server.serve()


def run_demo(settings: Settings, host: str, port: int, agent_port: int = 0) -> None:
    asyncio.run(serve_demo(settings, host, port, agent_port))
