"""`WebRTCTransport`: the signalling logic behind `/_sdk/v0/webrtc` and the per-process upkeep.

One instance per server process. It turns a session token + SDP offer into a joined
`WebRTCPeer` and its SDP answer (non-trickle: every candidate is gathered before answering),
leaves/closes peers on DELETE, and runs the allocator upkeep (`malloc_trim`) that keeps RSS from
creeping after sessions close (glibc retention measured in the transport notes, aiortc#904).

ICE configuration comes from `Settings`: `ice_servers` (JSON list of RTCIceServer objects; none
by default, never Google's public STUN), `udp_ports` ("40000-40100"), `webrtc_loopback` (dev).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import logging
import time
from typing import Any

from aiortc import RTCConfiguration, RTCIceServer

from facecast.config import Settings
from facecast.errors import ConfigError, FacecastError, InvalidRequest, InvalidSessionState
from facecast.transport import patches
from facecast.transport.patches import IcePolicy
from facecast.transport.peer import SessionManager, WebRTCPeer

log = logging.getLogger(__name__)

TRIM_INTERVAL_S = 60.0
MAX_SDP_CHARS = 100_000


def parse_ice_servers(raw: str | None) -> list[RTCIceServer]:
    """`FACECAST_ICE_SERVERS` → aiortc objects. Accepts `urls` as a string or a list."""
    if not raw:
        return []
    try:
        items = json.loads(raw)
        if not isinstance(items, list):
            raise ValueError("expected a JSON list")
        return [RTCIceServer(urls=item["urls"], username=item.get("username"),
                             credential=item.get("credential")) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"invalid configuration: FACECAST_ICE_SERVERS: {exc}") from exc


def ice_policy_from(settings: Settings) -> IcePolicy:
    try:
        ports = IcePolicy.parse_ports(settings.udp_ports)
    except ValueError as exc:
        raise ConfigError(f"invalid configuration: FACECAST_UDP_PORTS: {exc}") from exc
    return IcePolicy(loopback=settings.webrtc_loopback, port_range=ports)


def _load_malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


class WebRTCTransport:
    def __init__(self, settings: Settings, *, policy: IcePolicy | None = None,
                 connect_timeout: float = 30.0) -> None:
        patches.install()
        self.ice_servers = parse_ice_servers(settings.ice_servers)
        # the same servers in the browser's RTCIceServer shape, for the SDK (GET /_sdk/v0/config)
        self.browser_ice_servers = [
            {k: v for k, v in (("urls", s.urls), ("username", s.username),
                               ("credential", s.credential)) if v is not None}
            for s in self.ice_servers]
        self.policy = policy or ice_policy_from(settings)
        self.connect_timeout = connect_timeout
        self.peers: dict[str, WebRTCPeer] = {}
        self._malloc_trim = _load_malloc_trim()
        self._trim_task: asyncio.Task[None] | None = None
        self._last_trim = 0.0

    # -- signalling ---------------------------------------------------------------------------
    async def offer(self, manager: SessionManager, token: str, body: Any) -> dict[str, Any]:
        session_id = manager.verify_token(token)     # Unauthorized / InvalidSessionState
        sdp = _validate_offer(body)
        peer = WebRTCPeer(session_id, manager, RTCConfiguration(iceServers=self.ice_servers),
                          self.policy, on_closed=self._forget,
                          connect_timeout=self.connect_timeout)
        started = time.monotonic()
        try:
            await peer.accept_offer(sdp)
            runtime = await manager.join(session_id, peer)
        except BaseException:
            await peer.close()
            raise
        self.peers[peer.peer_id] = peer
        try:
            peer.attach(runtime)
            answer = await peer.answer()
        except BaseException:
            await peer.leave()
            raise
        self._ensure_upkeep()
        log.info("peer joined in %.0f ms", 1000 * (time.monotonic() - started), extra=peer.extra)
        return {
            "sdp": answer, "type": "answer", "peer_id": peer.peer_id,
            "session_id": session_id,
            "video": video_layout(runtime),
        }

    async def delete(self, manager: SessionManager, token: str, peer_id: str) -> None:
        try:
            session_id = manager.verify_token(token)
        except InvalidSessionState:
            return   # the session ended: the runtime has closed its peers already
        peer = self.peers.get(peer_id)
        if peer is None or peer.session_id != session_id:
            return   # idempotent: unknown or already gone
        await peer.leave()

    def _forget(self, peer: WebRTCPeer) -> None:
        self.peers.pop(peer.peer_id, None)
        self._trim_soon()

    async def aclose(self) -> None:
        """Server shutdown: close every peer, stop the upkeep."""
        for peer in list(self.peers.values()):
            await peer.close()
        if self._trim_task is not None:
            self._trim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trim_task
            self._trim_task = None

    # -- upkeep -------------------------------------------------------------------------------
    def _ensure_upkeep(self) -> None:
        if self._trim_task is None or self._trim_task.done():
            self._trim_task = asyncio.get_running_loop().create_task(
                self._upkeep(), name="webrtc-malloc-trim")

    async def _upkeep(self) -> None:
        while self.peers:
            await asyncio.sleep(TRIM_INTERVAL_S)
            await self.trim()
        await self.trim()

    def _trim_soon(self) -> None:
        if time.monotonic() - self._last_trim > 5.0:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().call_later(2.0, self._spawn_trim)

    def _spawn_trim(self) -> None:
        asyncio.get_running_loop().create_task(self.trim(), name="webrtc-malloc-trim-once")

    async def trim(self) -> None:
        """Give freed heap back to the OS (off the loop; glibc only)."""
        self._last_trim = time.monotonic()
        if self._malloc_trim is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._malloc_trim, 0)


def video_layout(runtime: Any) -> dict[str, Any]:
    """How the video track's pictures are laid out (see docs/webrtc.md)."""
    transparent = getattr(runtime, "background", "default") == "transparent"
    return {
        "width": int(getattr(runtime, "width", 512)),
        "height": int(getattr(runtime, "height", 512)),
        "fps": 25,
        "alpha": "stacked" if transparent else "none",
    }


def _validate_offer(body: Any) -> str:
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object {sdp, type}", field="body")
    if body.get("type") != "offer":
        raise InvalidRequest("type must be \"offer\"", field="type")
    sdp = body.get("sdp")
    if not isinstance(sdp, str) or not sdp.strip():
        raise InvalidRequest("sdp must be a non-empty string", field="sdp")
    if len(sdp) > MAX_SDP_CHARS:
        raise InvalidRequest("sdp is too large", field="sdp")
    if not sdp.lstrip().startswith("v=0"):
        raise InvalidRequest("sdp is not a session description", field="sdp")
    return sdp


__all__ = ["FacecastError", "WebRTCTransport", "parse_ice_servers", "video_layout"]
