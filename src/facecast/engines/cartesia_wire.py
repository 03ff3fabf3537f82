"""Cartesia agent WebSocket wire formats: Line (`/agents/stream`) and Managed Agents.

Pure functions and small value types, no I/O: where to connect and with which credential, the
first frame, how to wrap mic audio, how to read a server frame, and what a close means. See
`/work/shared/spec/cartesia-wire.md` for the protocols field by field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Literal
from urllib.parse import quote, urlencode

from facecast.sessions.state import EndReason

Api = Literal["line", "agents"]

INPUT_FORMAT = "pcm_24000"
# Managed Agents: pace agent audio at speaking rate, as Line does. The agent then knows roughly how
# much of an interrupted reply was heard, and a `clear` never sits behind seconds of queued audio.
MANAGED_OUTPUT_DELIVERY = "speaking_pace"

CLOSE_CALL_ENDED = "call ended by agent"
CLOSE_IDLE = "connection idle timeout"
CLIENT_CLOSE_REASON = "session completed"


class Kind(Enum):
    READY = "ready"              # Line `ack`, Managed `session_ready`
    AUDIO = "audio"              # Line `media_output`, Managed `audio_output`
    CLEAR = "clear"              # Line `clear`, Managed `audio_output_clear`
    ERROR = "error"              # Managed `error`
    TRANSFER = "transfer"        # Line `transfer_call`
    TOOL_CALL = "tool_call"      # Managed `client_tool_call`
    INFO = "info"                # dtmf, custom, turn events: tolerated, not acted on
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Inbound:
    kind: Kind
    name: str                    # the event name as received
    payload: str | None = None   # base64 audio for AUDIO
    data: Mapping[str, Any] = field(default_factory=dict)


_LINE_EVENTS = {
    "ack": Kind.READY,
    "media_output": Kind.AUDIO,
    "clear": Kind.CLEAR,
    "transfer_call": Kind.TRANSFER,
    "dtmf": Kind.INFO,
    "custom": Kind.INFO,
    "turn_started": Kind.INFO,
    "turn_output_text_delta": Kind.INFO,
    "turn_ended": Kind.INFO,
}
_MANAGED_EVENTS = {
    "session_ready": Kind.READY,
    "audio_output": Kind.AUDIO,
    "audio_output_clear": Kind.CLEAR,
    "error": Kind.ERROR,
    "client_tool_call": Kind.TOOL_CALL,
    "dtmf_output": Kind.INFO,
    "turn_started": Kind.INFO,
    "turn_output_text_delta": Kind.INFO,
    "turn_ended": Kind.INFO,
}


class MalformedFrame(ValueError):
    """A server frame that is not a JSON object."""


@dataclass(frozen=True)
class Target:
    """Where to connect. `url` may hold the credential (Managed query auth): never log it."""

    url: str
    safe_url: str                # `url` without its query string, for logs and errors
    headers: dict[str, str]


def build_target(api: Api, base_url: str, agent_id: str, token: str, *, line_version: str,
                 agents_version: str) -> Target:
    """The agent URL and handshake headers for `api`.

    Line: `Authorization: Bearer <token>` (fits both an access token and an API key).
    Managed: an API key (`sk_car_...`) goes in `X-API-Key`, the server way; anything else is a
    session token (from `POST /v1/agents/websocket/{agent_id}/sessions`), which Managed Agents
    only accepts as the `access_token` query parameter.
    """
    base = base_url.rstrip("/")
    agent = quote(agent_id, safe="")
    if api == "line":
        url = f"{base}/agents/stream/{agent}"
        return Target(url, url, {"Authorization": f"Bearer {token}",
                                 "Cartesia-Version": line_version})
    path = f"{base}/v1/agents/websocket/{agent}"
    headers = {"Cartesia-Version": agents_version}
    if token.startswith("sk_car_"):
        headers["X-API-Key"] = token
        return Target(path, path, headers)
    return Target(f"{path}?{urlencode({'access_token': token})}", path, headers)


def hello_frame(api: Api, stream_id: str) -> str:
    """The mandatory first client frame."""
    if api == "line":
        return json.dumps({"event": "start", "stream_id": stream_id,
                           "config": {"input_format": INPUT_FORMAT}})
    return json.dumps({"type": "session_create",
                       "audio": {"input_format": INPUT_FORMAT,
                                 "output_delivery": MANAGED_OUTPUT_DELIVERY}})


def audio_frame(api: Api, stream_id: str, b64: str) -> str:
    """One chunk of mic audio (`b64`: standard base64 of s16le mono 24 kHz)."""
    if api == "line":
        return ('{"event":"media_input","stream_id":' + json.dumps(stream_id)
                + ',"media":{"payload":"' + b64 + '"}}')
    return '{"type":"audio_input","audio":"' + b64 + '"}'


def tool_refusal_frame(tool_call_id: str, tool_name: str) -> str:
    """Managed: answer a client tool call we cannot run, so the agent does not wait for it."""
    return json.dumps({"type": "client_tool_result", "tool_call_id": tool_call_id,
                       "result": f"client tool {tool_name!r} is not available in this client",
                       "is_error": True})


def parse_frame(api: Api, text: str) -> Inbound:
    """Read one server text frame. Raises `MalformedFrame` when it is not a JSON object."""
    try:
        msg = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MalformedFrame(f"invalid JSON ({exc.msg} at {exc.pos})") from None
    except ValueError as exc:   # e.g. lone surrogates
        raise MalformedFrame(f"invalid JSON ({exc})") from None
    if not isinstance(msg, dict):
        raise MalformedFrame(f"expected a JSON object, got {type(msg).__name__}")
    first, second = ("event", "type") if api == "line" else ("type", "event")
    name = msg.get(first, msg.get(second))
    if not isinstance(name, str):
        return Inbound(Kind.UNKNOWN, "<no event name>", data=msg)
    table = _LINE_EVENTS if api == "line" else _MANAGED_EVENTS
    kind = table.get(name, Kind.UNKNOWN)
    if kind is Kind.AUDIO:
        if api == "line":
            media = msg.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
        else:
            payload = msg.get("audio")
        if not isinstance(payload, str):
            raise MalformedFrame(f"{name} without a base64 audio payload")
        return Inbound(kind, name, payload=payload)
    return Inbound(kind, name, data=msg)


@dataclass(frozen=True)
class CloseOutcome:
    reason: EndReason
    after_speech: bool
    error_code: str | None
    message: str


def classify_close(code: int | None, reason: str, *, lost: str | None = None) -> CloseOutcome:
    """What the agent closing the socket means for the session.

    Close code 1000 is a normal end: `"call ended by agent[, reason: ...]"` (the agent's
    `end_call`), `"connection idle timeout"` (180 s without a client frame), or any other reason
    (still a normal closure by definition). All are `agent_left`, after queued speech has played.
    Any other code, or a connection lost without a close frame (`code` None), is `engine_error`.
    """
    if code == 1000:
        text = f"agent closed the connection ({reason or 'no reason'})"
        return CloseOutcome(EndReason.AGENT_LEFT, True, None, text)
    if code is None:
        detail = f": {lost}" if lost else ""
        return CloseOutcome(EndReason.ENGINE_ERROR, False, "engine_error",
                            f"agent connection lost (1006){detail}")
    suffix = f": {reason}" if reason else ""
    return CloseOutcome(EndReason.ENGINE_ERROR, False, "engine_error",
                        f"agent connection closed unexpectedly ({code}){suffix}")


class SessionLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Adds `session_id` to every record and masks secrets in the formatted message.

    Also handed to websockets as its logger: at DEBUG it logs the request line and headers,
    which carry the credential.
    """

    def __init__(self, logger: logging.Logger, session_id: str,
                 secrets: Iterable[str] = ()) -> None:
        super().__init__(logger, {"session_id": session_id})
        self._secrets = sorted(mask_forms(secrets), key=len, reverse=True)

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        extra = dict(kwargs.get("extra") or {})
        extra.setdefault("session_id", self.extra["session_id"] if self.extra else "-")
        kwargs["extra"] = extra
        return msg, kwargs

    def log(self, level: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        if self._secrets:
            try:
                text = str(msg) % args if args else str(msg)
            except (TypeError, ValueError):
                text = " ".join([str(msg), *map(repr, args)])
            msg, args = self.redact(text), ()
        msg, extra_kwargs = self.process(msg, kwargs)
        self.logger.log(level, msg, *args, **extra_kwargs)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


def mask_forms(secrets: Iterable[str]) -> set[str]:
    """A secret as it may appear in text: raw, and URL-encoded."""
    out: set[str] = set()
    for s in secrets:
        if s:
            out.update({s, quote(s, safe=""), urlencode({"": s})[1:]})
    return out
