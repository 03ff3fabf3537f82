"""The FastAPI application: REST API, SDK signalling and static files, wired to the services."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.staticfiles import StaticFiles

from facecast import __version__
from facecast.api import errors
from facecast.api.avatars import router as avatars_router
from facecast.api.deps import Services
from facecast.api.limits import BodyLimitMiddleware
from facecast.api.sessions import router as sessions_router
from facecast.avatars import AvatarLibrary
from facecast.clock import Clock, SystemClock
from facecast.config import Settings, get_settings
from facecast.render.presets import PRESETS
from facecast.sessions.db import Database
from facecast.sessions.manager import LiveSession, RuntimeFactory, SessionManager
from facecast.sessions.runtime import SessionRuntime
from facecast.sessions.tokens import TokenSigner, load_or_create_secret
from facecast.webhooks import WebhookSender

log = logging.getLogger(__name__)

SDK_DIR = Path(__file__).resolve().parent.parent / "sdk"


def media_runtime_factory(services: Services) -> RuntimeFactory:
    """Runtimes with the real renderer, engines and media clock."""

    def factory(live: LiveSession, manager: SessionManager) -> SessionRuntime:
        preset = PRESETS[live.spec.render_model]

        def open_renderer():  # runs in the executor
            from facecast.render import open_render_session

            asset = services.avatars.load(live.spec.avatar_id)
            return open_render_session(asset, preset, background=live.spec.background,
                                       seed=int(live.id[-6:], 16))

        return SessionRuntime(live, manager, settings=services.settings,
                              renderer_factory=open_renderer, executor=services.executor,
                              width=preset.width, height=preset.height)

    return factory


def create_app(settings: Settings | None = None, *, clock: Clock | None = None,
               runtime_factory: RuntimeFactory | None = None) -> FastAPI:
    settings = settings or get_settings()
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        db = Database(settings.database_url)
        await db.create_all()
        executor = ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2),
                                      thread_name_prefix="facecast-work")
        signer = TokenSigner(settings.secret_key or load_or_create_secret(settings.data_dir),
                             settings.token_ttl)
        avatars = AvatarLibrary(db, settings.data_dir / "avatars", clock, executor)
        await avatars.init()
        services = Services(settings=settings, clock=clock, db=db, manager=None,  # type: ignore[arg-type]
                            avatars=avatars, executor=executor)
        services.manager = SessionManager(
            db, signer, clock, runtime_factory=runtime_factory or media_runtime_factory(services),
            max_sessions=settings.max_sessions)
        await services.manager.recover()
        webhooks = None
        if settings.webhook_url:
            webhooks = WebhookSender(settings.webhook_url, settings.webhook_secret)
            webhooks.start()
            services.manager.subscribe(webhooks.enqueue)
        app.state.services = services
        app.state.manager = services.manager
        try:
            yield
        finally:
            await services.manager.shutdown()  # tells every page why, then closes its peers
            webrtc = getattr(app.state, "webrtc", None)
            if webrtc is not None:
                await webrtc.aclose()
            if webhooks is not None:
                await webhooks.aclose()  # delivers the server_shutdown ends, bounded
            avatars.close()
            executor.shutdown(wait=True, cancel_futures=True)
            await db.close()

    app = FastAPI(title="facecast", version=__version__, lifespan=lifespan,
                  description="Real-time talking-face sessions for voice agents.")
    errors.install(app)

    def body_limit(method: str, path: str) -> int:
        if method == "POST" and path.rstrip("/") == "/api/v1/avatars":
            return settings.max_upload_bytes + 64 * 1024
        return settings.max_body_bytes

    app.add_middleware(BodyLimitMiddleware, limit_for=body_limit)
    app.include_router(sessions_router)
    app.include_router(avatars_router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, object]:
        manager = app.state.manager
        return {"status": "ok", "version": __version__, "live_sessions": manager.live_count}

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse)
    async def metrics() -> str:
        """Prometheus text format."""
        manager: SessionManager = app.state.manager
        lines = [
            "# TYPE facecast_sessions_live gauge", f"facecast_sessions_live {manager.live_count}",
            "# TYPE facecast_users_connected gauge",
            f"facecast_users_connected {manager.users_connected}",
            "# TYPE facecast_sessions_created_total counter",
            f"facecast_sessions_created_total {manager.created_total}",
            "# TYPE facecast_sessions_ended_total counter",
        ]
        lines += [f'facecast_sessions_ended_total{{reason="{r}"}} {n}'
                  for r, n in sorted(manager.ended_total.items())]
        return "\n".join(lines) + "\n"

    _include_media_routes(app)
    return app


def _include_media_routes(app: FastAPI) -> None:
    """The Web SDK's signalling endpoints and static files."""
    try:
        from facecast.transport.routes import router as webrtc_router
    except ImportError:  # pragma: no cover - transport not installed in a partial checkout
        log.warning("WebRTC transport unavailable")
    else:
        app.include_router(webrtc_router)
    if (SDK_DIR / "facecast.js").exists():
        app.mount("/sdk", StaticFiles(directory=SDK_DIR), name="sdk")
