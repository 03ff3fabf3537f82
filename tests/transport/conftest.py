"""A real uvicorn server (127.0.0.1:0, same loop) with the transport routes and the stand-in
session manager; clients are plain aiortc peers offering only a loopback candidate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
import uvicorn
from fastapi import FastAPI

from facecast.config import Settings
from facecast.transport.routes import transport_router
from facecast.transport.standin import StandinManager
from facecast.transport.webrtc import WebRTCTransport


@dataclass
class Server:
    base_url: str
    manager: StandinManager
    transport: WebRTCTransport


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    settings = Settings(webrtc_loopback=True, ice_servers=None, udp_ports=None)
    transport = WebRTCTransport(settings, connect_timeout=10.0)
    manager = StandinManager()
    app = FastAPI()
    app.state.manager = manager
    app.include_router(transport_router(transport))
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    srv = uvicorn.Server(config)
    task = asyncio.create_task(srv.serve(), name="test-uvicorn")
    while not srv.started:  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.01)
    port = srv.servers[0].sockets[0].getsockname()[1]
    try:
        yield Server(f"http://127.0.0.1:{port}", manager, transport)
    finally:
        await manager.aclose()
        await transport.aclose()
        srv.should_exit = True
        await task
