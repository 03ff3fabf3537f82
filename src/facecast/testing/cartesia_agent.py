"""A local stand-in for Cartesia's agent WebSockets (Line and Managed Agents), no keys needed.

A real `websockets` server speaking both wire protocols of /shared/spec/cartesia-wire.md:

- Line: `ws://HOST:PORT/agents/stream/{agent_id}`; auth `Authorization: Bearer T`,
  `X-API-Key: T` or `?access_token=T`.
- Managed Agents: `ws://HOST:PORT/v1/agents/websocket/{agent_id}`; auth `X-API-Key: T` or
  `?access_token=T`.

With `token` set, any other credential is refused with HTTP 401 before the upgrade; without it,
any non-empty credential is accepted. Each accepted socket becomes an `AgentConnection` (see
`facecast.testing.cartesia_call`) that tests take with `await standin.next_connection()` and
drive by script; unless `persona=None`, a persona (the keyless parrot by default) also greets and
answers by itself.

    async with CartesiaStandIn(persona=None) as agent:
        ws = await websockets.connect(agent.line_url("a1"), additional_headers=...)
        conn = await agent.next_connection()
        await conn.say("Hello.")

Run it by hand: `python -m facecast.testing.cartesia_agent --port 8765 [--token T]`.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hmac
import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, quote

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.datastructures import Headers
from websockets.frames import Frame
from websockets.http11 import Request, Response

from facecast.clock import Clock, SystemClock
from facecast.testing.call_media import Speech
from facecast.testing.cartesia_call import AgentConnection, ConnEvent
from facecast.testing.cartesia_wire import Protocol, match_path
from facecast.testing.persona import DEFAULT_PERSONA, ParrotPersona, Persona
from facecast.testing.vad import VadConfig

logger = logging.getLogger(__name__)

__all__ = [
    "AgentConnection",
    "CartesiaStandIn",
    "ConnEvent",
    "ParrotPersona",
    "Persona",
    "Speech",
    "StandInOptions",
    "VadConfig",
    "main",
    "run_standin",
]


@dataclass(frozen=True)
class StandInOptions:
    """Behaviour knobs; the defaults imitate Cartesia where it is documented."""

    idle_timeout: float = 180.0        # close 1000 "connection idle timeout" after this
    start_timeout: float = 10.0        # first frame (start / session_create) deadline
    greeting: bool = True              # let the persona speak first (its on_call_started)
    chunk_ms: int = 40                 # agent audio chunk duration (20-100 ms like Cartesia)
    initial_burst_ms: int = 80         # sent ahead of real time at the start of each run
    voice: str = "en-us"               # espeak-ng voice for say(text)
    vad: VadConfig = field(default_factory=VadConfig)
    turn_preroll_ms: int = 100         # audio kept before/after a detected user turn
    max_record_s: float = 600.0        # received_pcm() keeps at most this much
    line_turn_events: bool = False     # newer cartesia_version: turn_* events on Line too
    end_call_reason_in_close: bool = False  # close reason "call ended by agent, reason: X"
    agent_version_id: str = "agv_standin_1"
    # Managed: an `error` (code, message, fatal) sent right after session_create, before
    # session_ready; a fatal one is followed by close 1008 and no session_ready
    handshake_error: tuple[str, str, bool] | None = None


class _TrackedConnection(ServerConnection):
    """Reports every client frame (pings included) so the idle timer sees them."""

    frame_listener: Callable[[], None] | None = None

    def process_event(self, event: Any) -> None:
        handshaken = self.request is not None
        super().process_event(event)
        if handshaken and isinstance(event, Frame) and self.frame_listener is not None:
            self.frame_listener()


def _credential(protocol: Protocol, headers: Headers,
                query: dict[str, str]) -> tuple[str, str] | None:
    """(kind, credential) the client presented, or None."""
    if protocol == "line":
        scheme, _, value = headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return "bearer", value.strip()
    if key := headers.get("X-API-Key"):
        return "x-api-key", key
    if token := query.get("access_token"):
        return "access_token", token
    return None


def _route(path: str) -> tuple[Protocol, str, dict[str, str]] | None:
    route, _, qs = path.partition("?")
    try:
        matched = match_path(route)
    except UnicodeDecodeError:       # a percent-encoded agent id that is not UTF-8
        return None
    if matched is None:
        return None
    return matched[0], matched[1], dict(parse_qsl(qs, keep_blank_values=True))


class CartesiaStandIn:
    """The stand-in server. `port=0` picks a free port; read `.url` after `start()`.

    Options (`StandInOptions` fields) can be passed as keywords: `CartesiaStandIn(chunk_ms=20)`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str | None = None,
                 idle_timeout: float = 180.0, persona: Persona | None = DEFAULT_PERSONA, *,
                 options: StandInOptions | None = None, clock: Clock | None = None,
                 **overrides: Any) -> None:
        base = options or StandInOptions()
        self.options = dataclasses.replace(base, idle_timeout=idle_timeout, **overrides)
        self.host = host
        self.port = port
        self.token = token
        self.persona = persona
        self.clock: Clock = clock or SystemClock()
        self.connections: list[AgentConnection] = []
        self.rejected: list[tuple[int, str]] = []   # (HTTP status, path without query)
        self._server: Server | None = None
        # Connection handles, not media: one per accepted socket.
        self._accepted: asyncio.Queue[AgentConnection] = asyncio.Queue()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return f"ws://{self.host}:{self.port}"

    def line_url(self, agent_id: str = "agent_standin") -> str:
        return f"{self.url}/agents/stream/{quote(agent_id, safe='')}"

    def agents_url(self, agent_id: str = "agent_standin") -> str:
        return f"{self.url}/v1/agents/websocket/{quote(agent_id, safe='')}"

    async def start(self) -> CartesiaStandIn:
        self._server = await serve(
            self._handle, self.host, self.port,
            process_request=self._process_request,
            create_connection=_TrackedConnection,
            ping_interval=None,          # only client frames may keep a call alive
            close_timeout=2,
        )
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]
        logger.info("cartesia stand-in listening on %s", self.url)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> CartesiaStandIn:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def next_connection(self, timeout: float = 5.0) -> AgentConnection:
        """The next accepted (authenticated) socket, in order of arrival."""
        return await asyncio.wait_for(self._accepted.get(), timeout)

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        route = _route(request.path)
        path = request.path.partition("?")[0]
        if route is None:
            self.rejected.append((404, path))
            return connection.respond(HTTPStatus.NOT_FOUND, "unknown agent endpoint\n")
        protocol, _, query = route
        credential = _credential(protocol, request.headers, query)
        ok = credential is not None and (
            self.token is None
            or hmac.compare_digest(credential[1].encode(), self.token.encode()))
        if not ok:
            self.rejected.append((401, path))
            logger.info("refused %s upgrade on %s: %s", protocol, path,
                        "no credential" if credential is None else "bad credential")
            return connection.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        route = _route(ws.request.path)
        assert route is not None
        protocol, agent_id, query = route
        version = query.get("cartesia_version") or ws.request.headers.get("Cartesia-Version")
        credential = _credential(protocol, ws.request.headers, query)
        conn = AgentConnection(
            ws, protocol, agent_id, query, version, credential[0] if credential else "",
            self.options, self.persona, self.clock, conn_id=f"conn{next(self._ids)}")
        if isinstance(ws, _TrackedConnection):
            ws.frame_listener = conn.touch
        logger.info("%s: %s call to agent %s (Cartesia-Version %s)", conn.id, protocol,
                    agent_id, version)
        self.connections.append(conn)
        self._accepted.put_nowait(conn)
        await conn.run()


async def _serve_forever(host: str, port: int, token: str | None, idle_timeout: float) -> None:
    async with CartesiaStandIn(host, port, token=token, idle_timeout=idle_timeout) as agent:
        print(f"Cartesia stand-in listening on {agent.url}", flush=True)
        print(f"  Line:           {agent.line_url('AGENT_ID')}", flush=True)
        print(f"  Managed Agents: {agent.agents_url('AGENT_ID')}", flush=True)
        print("  auth: " + ("the configured token" if token else "any non-empty token")
              + "; Ctrl-C to stop", flush=True)
        await asyncio.Event().wait()


def run_standin(host: str = "127.0.0.1", port: int = 8765, token: str | None = None,
                idle_timeout: float = 180.0) -> None:
    """Run the stand-in with the demo persona until Ctrl-C (blocking; for the CLI)."""
    try:
        asyncio.run(_serve_forever(host, port, token, idle_timeout))
    except KeyboardInterrupt:
        print("stopped", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m facecast.testing.cartesia_agent",
        description="Local stand-in for Cartesia's agent WebSockets (demo parrot persona).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--token", default=None, help="require this token (default: any)")
    parser.add_argument("--idle-timeout", type=float, default=180.0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_standin(args.host, args.port, args.token, args.idle_timeout)


if __name__ == "__main__":
    main()
