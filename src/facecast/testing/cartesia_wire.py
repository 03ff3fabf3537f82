"""The two Cartesia agent wire dialects, as the stand-in speaks them (server side).

See /shared/spec/cartesia-wire.md. `Line` frames are keyed by `event` and carry `stream_id`;
Managed Agents frames are keyed by `type`. Audio is base64 inside JSON text frames, in the
client's `input_format` both ways (s16le mono for `pcm_*`, G.711 mu-law for `mulaw_8000`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

import numpy as np

Protocol = Literal["line", "agents"]

# The agent id is one path segment, percent-encoded by clients (`org:agent.1` → `org%3Aagent.1`)
LINE_PATH = re.compile(r"/agents/stream/(?P<agent_id>[^/?#]+)")
AGENTS_PATH = re.compile(r"/v1/agents/websocket/(?P<agent_id>[^/?#]+)")

INPUT_FORMATS: dict[str, tuple[str, int]] = {
    "pcm_16000": ("pcm", 16000),
    "pcm_24000": ("pcm", 24000),
    "pcm_44100": ("pcm", 44100),
    "mulaw_8000": ("mulaw", 8000),
}
OUTPUT_DELIVERIES = ("speaking_pace", "as_available")
SESSION_CREATE_FIELDS = {"type", "audio", "dynamic_variables"}
SESSION_AUDIO_FIELDS = {"input_format", "output_delivery"}
DTMF_DIGITS = set("0123456789*#")


class WireError(Exception):
    """A client frame broke the protocol. `code` is the Managed Agents error code."""

    def __init__(self, message: str, code: str = "invalid_event") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def match_path(path: str) -> tuple[Protocol, str] | None:
    """(protocol, decoded agent id) for an agent endpoint path (no query), else None."""
    routes: tuple[tuple[Protocol, re.Pattern[str]], ...] = (("line", LINE_PATH),
                                                            ("agents", AGENTS_PATH))
    for protocol, pattern in routes:
        if m := pattern.fullmatch(path):
            agent_id = unquote(m["agent_id"], errors="strict")
            return (protocol, agent_id) if agent_id else None
    return None


# -- G.711 mu-law -------------------------------------------------------------------------------
_BIAS = 0x84


def mulaw_decode(data: bytes) -> np.ndarray:
    u = ~np.frombuffer(data, dtype=np.uint8).astype(np.int32) & 0xFF
    exponent = (u >> 4) & 0x07
    mantissa = u & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    return np.where(u & 0x80, -magnitude, magnitude).astype(np.int16)


def mulaw_encode(pcm: np.ndarray) -> bytes:
    """ITU-T G.711 mu-law (the reference 14-bit algorithm, as in audioop.lin2ulaw)."""
    x = pcm.astype(np.int32) >> 2
    negative = x < 0
    mag = np.minimum(np.where(negative, -x, x), 8159) + 0x21
    segment = np.clip(np.floor(np.log2(mag)).astype(np.int32) - 5, 0, 8)
    code = np.where(segment > 7, 0x7F, (segment << 4) | ((mag >> (segment + 1)) & 0x0F))
    return (code ^ np.where(negative, 0x7F, 0xFF)).astype(np.uint8).tobytes()


@dataclass(frozen=True)
class AudioFormat:
    name: str
    encoding: str
    sample_rate: int

    @classmethod
    def parse(cls, name: object) -> AudioFormat:
        if not isinstance(name, str) or name not in INPUT_FORMATS:
            raise WireError(f"unsupported input_format {name!r}; expected one of "
                            f"{sorted(INPUT_FORMATS)}")
        encoding, rate = INPUT_FORMATS[name]
        return cls(name, encoding, rate)

    def decode(self, payload: object) -> np.ndarray:
        if not isinstance(payload, str):
            raise WireError("audio payload must be a base64 string")
        try:
            raw = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise WireError("audio payload is not valid base64") from exc
        if self.encoding == "mulaw":
            return mulaw_decode(raw)
        if len(raw) % 2:
            raise WireError("pcm payload has an odd number of bytes")
        return np.frombuffer(raw, dtype="<i2").astype(np.int16)

    def encode(self, pcm: np.ndarray) -> str:
        raw = mulaw_encode(pcm) if self.encoding == "mulaw" else pcm.astype("<i2").tobytes()
        return base64.b64encode(raw).decode("ascii")


# -- handshake frames ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CallSetup:
    """What the first client frame (`start` / `session_create`) asked for."""

    frame: dict[str, Any]
    audio: AudioFormat
    stream_id: str | None = None
    agent: dict[str, Any] | None = None
    output_delivery: str = "speaking_pace"
    dynamic_variables: dict[str, Any] | None = None

    @property
    def introduction(self) -> str | None:
        intro = (self.agent or {}).get("introduction")
        return intro if isinstance(intro, str) else None


def parse_line_start(frame: object) -> CallSetup:
    if not isinstance(frame, dict) or frame.get("event") != "start":
        raise WireError("first message must be a start event")
    config = frame.get("config")
    if not isinstance(config, dict):
        raise WireError("start.config must be an object")
    audio = AudioFormat.parse(config.get("input_format"))
    stream_id = frame.get("stream_id")
    if stream_id is not None and not isinstance(stream_id, str):
        raise WireError("start.stream_id must be a string")
    agent = frame.get("agent")
    if agent is not None and not isinstance(agent, dict):
        raise WireError("start.agent must be an object")
    metadata = frame.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise WireError("start.metadata must be an object")
    return CallSetup(frame=frame, audio=audio, stream_id=stream_id, agent=agent)


def parse_session_create(frame: object) -> CallSetup:
    if not isinstance(frame, dict) or frame.get("type") != "session_create":
        raise WireError("first message must be session_create")
    unknown = set(frame) - SESSION_CREATE_FIELDS
    if unknown:
        raise WireError(f"unknown fields in session_create: {sorted(unknown)}")
    audio = frame.get("audio")
    if not isinstance(audio, dict):
        raise WireError("session_create.audio must be an object")
    unknown = set(audio) - SESSION_AUDIO_FIELDS
    if unknown:
        raise WireError(f"unknown fields in session_create.audio: {sorted(unknown)}")
    fmt = AudioFormat.parse(audio.get("input_format"))
    delivery = audio.get("output_delivery", "speaking_pace")
    if delivery not in OUTPUT_DELIVERIES:
        raise WireError(f"unsupported output_delivery {delivery!r}")
    variables = frame.get("dynamic_variables")
    if variables is not None:
        if not isinstance(variables, dict) or not all(
            isinstance(k, str) and isinstance(v, str | int | float | bool)
            for k, v in variables.items()
        ):
            raise WireError("dynamic_variables must map names to scalars",
                            code="invalid_dynamic_variables")
    return CallSetup(frame=frame, audio=fmt, output_delivery=delivery,
                     dynamic_variables=variables)


# -- server → client frames ---------------------------------------------------------------------
class Dialect:
    """Builds server frames for one call; `key` is the discriminator field name."""

    protocol: Protocol
    key: str

    def frame(self, name: str, **fields: Any) -> dict[str, Any]:
        return {self.key: name, **fields}

    def audio(self, payload: str) -> dict[str, Any]:
        raise NotImplementedError

    def clear(self) -> dict[str, Any]:
        raise NotImplementedError

    def dtmf(self, digit: str) -> dict[str, Any]:
        raise NotImplementedError


class LineDialect(Dialect):
    protocol: Protocol = "line"
    key = "event"

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id

    def frame(self, name: str, **fields: Any) -> dict[str, Any]:
        return {"event": name, "stream_id": self.stream_id, **fields}

    def ack(self, setup: CallSetup) -> dict[str, Any]:
        ack = self.frame("ack", config=setup.frame["config"])
        if setup.agent is not None:
            ack["agent"] = setup.agent
        return ack

    def audio(self, payload: str) -> dict[str, Any]:
        return self.frame("media_output", media={"payload": payload})

    def clear(self) -> dict[str, Any]:
        return self.frame("clear")

    def dtmf(self, digit: str) -> dict[str, Any]:
        return self.frame("dtmf", dtmf=digit)

    def transfer(self, number: str) -> dict[str, Any]:
        return self.frame("transfer_call", transfer={"target_phone_number": number})

    def custom(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return self.frame("custom", metadata=metadata)


class AgentsDialect(Dialect):
    protocol: Protocol = "agents"
    key = "type"

    def session_ready(self, call_id: str, agent_id: str, version_id: str,
                      setup: CallSetup) -> dict[str, Any]:
        audio = {"input_format": setup.audio.name, "output_delivery": setup.output_delivery}
        return self.frame("session_ready", call_id=call_id, agent_id=agent_id,
                          agent_version_id=version_id, audio=audio)

    def audio(self, payload: str) -> dict[str, Any]:
        return self.frame("audio_output", audio=payload)

    def clear(self) -> dict[str, Any]:
        return self.frame("audio_output_clear")

    def dtmf(self, digit: str) -> dict[str, Any]:
        return self.frame("dtmf_output", digit=digit)

    def error(self, code: str, message: str, fatal: bool) -> dict[str, Any]:
        return self.frame("error", code=code, message=message, fatal=fatal)

    def tool_call(self, tool_call_id: str, name: str, parameters: dict[str, Any],
                  expects_response: bool) -> dict[str, Any]:
        return self.frame("client_tool_call", tool_call_id=tool_call_id, tool_name=name,
                          parameters=parameters, expects_response=expects_response)


# -- client → server frames after the handshake -------------------------------------------------
def loads_frame(raw: str | bytes) -> Any:
    """A client frame as JSON; every frame must be JSON text."""
    if isinstance(raw, bytes):
        raise WireError("binary frames are not part of the protocol; send JSON text")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise WireError(f"invalid JSON: {exc.msg}") from exc


LINE_EVENTS = {"media_input", "dtmf", "custom"}
AGENTS_EVENTS = {"audio_input", "dtmf_input", "client_tool_result"}


def classify(protocol: Protocol, frame: object) -> tuple[str, Any]:
    """(event name, audio payload or None) of a parsed client frame; raises WireError."""
    if not isinstance(frame, dict):
        raise WireError("frames must be JSON objects")
    key = "event" if protocol == "line" else "type"
    name = frame.get(key)
    known = LINE_EVENTS if protocol == "line" else AGENTS_EVENTS
    if not isinstance(name, str) or name not in known:
        raise WireError(f"unknown {key} {name!r}")
    if name == "media_input":
        media = frame.get("media")
        return name, media.get("payload") if isinstance(media, dict) else None
    if name == "audio_input":
        return name, frame.get("audio")
    if name in ("dtmf", "dtmf_input"):
        digit = frame.get("dtmf" if name == "dtmf" else "digit")
        if not isinstance(digit, str) or digit not in DTMF_DIGITS:
            raise WireError(f"invalid DTMF digit {digit!r}")
    return name, None
