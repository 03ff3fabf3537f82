"""A complete `external` conversation engine for facecast, in one file.

facecast connects *to* this server (the session's `conversation_engine.url`), streams the user's
microphone to it as binary PCM16LE, and plays whatever it sends back inside segments. This engine
has no AI in it: when the user stops talking (a simple energy VAD), it answers by playing the
user's own words back (`--reply echo`) or a short chime (`--reply tone`). It also shows barge-in
(the user talks over the avatar → `avatar.speech.interrupt`), custom page messages, and a
bearer-token check on the connection.

Run it:

    pip install websockets numpy
    python examples/echo_engine.py --port 8765 --token dev-secret

and create a facecast session with:

    "conversation_engine": {
        "type": "external",
        "url": "ws://127.0.0.1:8765",
        "audio": {"user": {"sample_rate": 16000}},
        "headers": {"Authorization": "Bearer dev-secret"}
    }

Only `websockets` and `numpy` are used, on purpose: nothing here depends on facecast.
See docs/external-engine.md for the protocol.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

log = logging.getLogger("echo_engine")

AVATAR_RATE = 24_000        # facecast always plays 24 kHz PCM16LE mono
SEND_CHUNK_MS = 100         # any size works; there is no need to pace audio to real time


@dataclass
class Vad:
    """Energy VAD on 20 ms frames: a turn is >= 300 ms of speech followed by 700 ms of quiet."""

    rate: int
    threshold_db: float = -40.0
    min_speech_ms: int = 300
    hangover_ms: int = 700
    speaking: bool = False
    voiced_ms: int = 0
    quiet_ms: int = 0
    turn: list[np.ndarray] = field(default_factory=list)
    _pending: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    def feed(self, pcm: np.ndarray) -> tuple[bool, np.ndarray | None]:
        """Returns (speech_started_now, finished_turn_or_None)."""
        data = np.concatenate([self._pending, pcm])
        step = self.rate // 50
        started, finished = False, None
        while data.size >= step:
            frame, data = data[:step], data[step:]
            rms = math.sqrt(float(np.mean(frame.astype(np.float64) ** 2))) or 1e-3
            loud = 20 * math.log10(rms / 32768) > self.threshold_db
            if loud:
                self.voiced_ms += 20
                self.quiet_ms = 0
                if not self.speaking and self.voiced_ms >= 60:
                    self.speaking, started = True, True
            elif self.speaking:
                self.quiet_ms += 20
            else:
                self.voiced_ms = 0
                self.turn.clear()
            self.turn.append(frame)
            if self.speaking and self.quiet_ms >= self.hangover_ms:
                turn = np.concatenate(self.turn)
                if self.voiced_ms >= self.min_speech_ms:
                    finished = turn
                self.speaking, self.voiced_ms, self.quiet_ms = False, 0, 0
                self.turn.clear()
        self._pending = data
        return started, finished


def to_avatar_rate(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Linear-interpolation resampling: crude, dependency-free, fine for an echo."""
    if rate == AVATAR_RATE or pcm.size == 0:
        return pcm
    n = int(pcm.size * AVATAR_RATE / rate)
    x = np.linspace(0, pcm.size - 1, n)
    return np.interp(x, np.arange(pcm.size), pcm.astype(np.float64)).astype(np.int16)


def chime(seconds: float = 0.8) -> np.ndarray:
    t = np.arange(int(seconds * AVATAR_RATE)) / AVATAR_RATE
    notes = np.where(t < seconds / 2, 660.0, 880.0)
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) * 20)
    return (9000 * envelope * np.sin(2 * np.pi * notes * t)).astype(np.int16)


class Conversation:
    """One facecast session = one WebSocket connection."""

    def __init__(self, ws: ServerConnection, user_rate: int, reply: str) -> None:
        self.ws = ws
        self.user_rate = user_rate
        self.reply = reply
        self.vad = Vad(user_rate)
        self.turns = 0
        self.speaking_uid: str | None = None   # a segment of ours is created and not yet over
        self.responder: asyncio.Task[None] | None = None

    async def send(self, event: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(event))

    async def run(self) -> None:
        async for message in self.ws:
            if isinstance(message, bytes):          # the user's mic, PCM16LE mono
                await self.on_mic(np.frombuffer(message, dtype="<i2"))
            else:
                await self.on_event(json.loads(message))

    async def on_mic(self, pcm: np.ndarray) -> None:
        started, turn = self.vad.feed(pcm)
        if started and self.speaking_uid is not None:
            log.info("user barged in: interrupting %s", self.speaking_uid)
            if self.responder is not None:
                self.responder.cancel()
            await self.send({"type": "avatar.speech.interrupt"})
        if turn is not None:
            self.turns += 1
            audio = to_avatar_rate(turn, self.user_rate) if self.reply == "echo" else chime()
            self.responder = asyncio.create_task(self.respond(f"turn-{self.turns}", audio))

    async def respond(self, uid: str, audio: np.ndarray) -> None:
        """One reply = one segment: create, audio (as fast as the socket takes it), close."""
        self.speaking_uid = uid
        await self.send({"type": "avatar.speech.segment.create", "segment_uid": uid})
        step = AVATAR_RATE * SEND_CHUNK_MS // 1000
        for i in range(0, audio.size, step):
            await self.ws.send(audio[i:i + step].astype("<i2").tobytes())
        await self.send({"type": "avatar.speech.segment.close", "segment_uid": uid})
        await self.send({"type": "sdk.message.send", "data": {"caption": f"(reply {uid})"}})

    async def on_event(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        uid = event.get("segment_uid")
        if kind == "avatar.speech.segment.playback.started":
            log.info("avatar started speaking %s (%s)", uid, event.get("segment_id"))
        elif kind == "avatar.speech.segment.playback.ended":
            log.info("avatar finished %s", uid)
            if uid == self.speaking_uid:
                self.speaking_uid = None
        elif kind == "avatar.speech.segment.playback.interrupted":
            # A real agent truncates its chat history to what the user actually heard.
            log.info("%s interrupted after %.2f s", uid, event.get("played_duration", 0.0))
            if uid == self.speaking_uid:
                self.speaking_uid = None
        elif kind == "sdk.message.receive":
            await self.send({"type": "sdk.message.send", "data": {"echo": event.get("data")}})
        elif kind == "error":
            log.warning("facecast says: %s: %s", event.get("subtype"), event.get("reason"))


def make_handler(user_rate: int, reply: str) -> Any:
    async def handler(ws: ServerConnection) -> None:
        log.info("facecast connected")
        conversation = Conversation(ws, user_rate, reply)
        try:
            await conversation.run()
        except ConnectionClosed:
            pass
        finally:
            if conversation.responder is not None:
                conversation.responder.cancel()
            log.info("facecast disconnected after %d turns", conversation.turns)
    return handler


def make_auth(token: str | None) -> Any:
    def check(ws: ServerConnection, request: Request) -> Response | None:
        if token and request.headers.get("Authorization") != f"Bearer {token}":
            return ws.respond(HTTPStatus.UNAUTHORIZED, "bad or missing bearer token\n")
        return None
    return check


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--user-rate", type=int, choices=(16000, 24000), default=16000,
                        help="must match conversation_engine.audio.user.sample_rate")
    parser.add_argument("--reply", choices=("echo", "tone"), default="echo")
    parser.add_argument("--token", help="require 'Authorization: Bearer <token>'")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    async with serve(make_handler(args.user_rate, args.reply), args.host, args.port,
                     process_request=make_auth(args.token), max_size=2**20) as server:
        log.info("echo engine on ws://%s:%d", args.host, args.port)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
