"""Request models for `conversation_engine` (a `type`-tagged union).

Secrets (`access_token`, `headers`) are `SecretStr`: they are never serialised back, never stored
in the database, and only live in memory for the session's lifetime. `public()` gives what may be
shown in responses and stored. An optional field sent as `null` takes its default, as if it were
left out (the reference platform types e.g. `headers` as `Record<string,string> | null`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)


def redact_url(url: str) -> str:
    """scheme://host[:port]/path: no credentials, no query string (it may carry a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class _Strict(BaseModel):
    """Unknown keys are refused; an optional field sent as `null` takes its default."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _null_means_default(cls, data: Any) -> Any:
        if isinstance(data, dict):
            fields = cls.model_fields
            data = {k: v for k, v in data.items()
                    if not (v is None and k in fields and not fields[k].is_required())}
        return data


class _EngineBase(_Strict):
    def public(self) -> dict[str, Any]:
        raise NotImplementedError


class CartesiaEngineConfig(_EngineBase):
    type: Literal["cartesia"]
    agent_id: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_\-.:]+$")
    access_token: SecretStr = Field(min_length=1, max_length=8192)
    api: Literal["line", "agents"] = "line"

    def public(self) -> dict[str, Any]:
        return {"type": self.type, "agent_id": self.agent_id, "api": self.api}


class ExternalUserAudio(_Strict):
    sample_rate: Literal[16000, 24000] = 24000


class ExternalAudio(_Strict):
    user: ExternalUserAudio = Field(default_factory=ExternalUserAudio)


class ExternalEngineConfig(_EngineBase):
    type: Literal["external"]
    url: AnyUrl
    audio: ExternalAudio = Field(default_factory=ExternalAudio)
    headers: dict[str, SecretStr] = Field(default_factory=dict, max_length=32)

    @field_validator("url")
    @classmethod
    def _ws_scheme(cls, v: AnyUrl) -> AnyUrl:
        if v.scheme not in ("ws", "wss"):
            raise ValueError("url must be a ws:// or wss:// URL")
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, value in v.items():
            if not name or len(name) > 100 or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"invalid header name {name!r}")
            raw = value.get_secret_value()
            if len(raw) > 4096 or not all(" " <= c <= "~" or c == "\t" for c in raw):
                # never echo the value: it is a secret
                raise ValueError(f"header {name!r}: value must be printable ASCII, at most 4096 chars")
        return v

    def public(self) -> dict[str, Any]:
        return {"type": self.type, "url": redact_url(str(self.url)),
                "audio": {"user": {"sample_rate": self.audio.user.sample_rate}}}


class TextEchoTTS(_Strict):
    voice: str = Field(default="en-us", min_length=1, max_length=64)
    rate: int = Field(default=165, ge=80, le=450, description="words per minute")
    pitch: int = Field(default=50, ge=0, le=99)


class TextEchoEngineConfig(_EngineBase):
    type: Literal["text-echo"]
    tts: TextEchoTTS = Field(default_factory=TextEchoTTS)

    def public(self) -> dict[str, Any]:
        return {"type": self.type, "tts": self.tts.model_dump()}


EngineConfig = Annotated[
    CartesiaEngineConfig | ExternalEngineConfig | TextEchoEngineConfig,
    Field(discriminator="type"),
]
