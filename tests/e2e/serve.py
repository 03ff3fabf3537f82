"""The facecast server for browser tests and the e2e bench (run inside the private namespace).

    python tests/e2e/serve.py --host 198.51.100.1 --port 8000 --cartesia-url ws://198.51.100.2:P
        [--renderer pattern|real] --data-dir DIR

The real app (REST API, session manager, engines, transport, demo router) with a fresh dev API
key, printed as one JSON line on stdout once the server listens. `--renderer pattern` (default)
swaps the avatar renderer for the transport's test pattern (mouth bar ∝ speech level, frame
counter), so tests can read the mouth region and frame numbers from the decoded video.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import uvicorn

from facecast.api.app import create_app
from facecast.config import Settings
from facecast.demo import demo_router
from facecast.demo_runner import _dev_key
from facecast.sessions.runtime import SessionRuntime
from facecast.transport.standin import PatternRenderer


def pattern_factory(holder: dict[str, Any], settings: Settings) -> Any:
    def factory(live: Any, manager: Any) -> SessionRuntime:
        transparent = live.spec.background == "transparent"
        return SessionRuntime(live, manager, settings=settings,
                              renderer_factory=lambda: PatternRenderer(512, 512, transparent=transparent),
                              executor=holder["app"].state.services.executor, width=512, height=512)
    return factory


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--cartesia-url", required=True)
    p.add_argument("--renderer", choices=["pattern", "real"], default="pattern")
    p.add_argument("--data-dir", required=True)
    p.add_argument("--max-sessions", type=int, default=20)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (startup, before serving)
    settings = Settings(database_url=f"sqlite:///{data}/facecast.db", data_dir=data,
                        cartesia_url=args.cartesia_url, host=args.host, port=args.port,
                        max_sessions=args.max_sessions, secret_key="x" * 40)
    key = await _dev_key(settings)
    holder: dict[str, Any] = {}
    factory = pattern_factory(holder, settings) if args.renderer == "pattern" else None
    app = create_app(settings, runtime_factory=factory)
    holder["app"] = app
    base = f"http://{args.host}:{args.port}"
    app.include_router(demo_router(api_base=base, api_key=key))
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_config=None,
                                           log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event)
        await asyncio.sleep(0.02)
        if task.done():
            await task
            return
    print(json.dumps({"api_key": key, "base_url": base}), flush=True)
    await task


if __name__ == "__main__":
    asyncio.run(main())
