"""Settings: one typed object, loaded once from `FACECAST_*` environment variables.

Code never reads `os.environ` elsewhere. A bad value fails fast, naming the variable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from facecast.errors import ConfigError


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FACECAST_", extra="ignore")

    database_url: str = Field(default="sqlite:///./facecast.db",
                              description="SQLAlchemy URL; SQLite file by default, PostgreSQL works")
    data_dir: Path = Field(default=Path("./facecast-data"), description="avatars and the secret key")
    secret_key: str | None = Field(default=None, min_length=32,
                                   description="signs session tokens; generated into data_dir if unset")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    public_url: str | None = Field(default=None, description="base URL the SDK uses, if behind a proxy")
    token_ttl: int = Field(default=600, ge=10, le=86400, description="seconds a session token may be used to join")
    max_sessions: int = Field(default=10, ge=1, description="concurrent non-ended sessions")
    max_body_bytes: int = Field(default=1_000_000, ge=1024, description="largest JSON request body")
    max_upload_bytes: int = Field(default=10_000_000, ge=1024, description="largest avatar upload")
    cartesia_url: str = Field(default="wss://api.cartesia.ai", description="Cartesia agent WebSocket base")
    cartesia_api_url: str = Field(default="https://api.cartesia.ai", description="Cartesia REST base")
    cartesia_version: str = "2025-04-16"
    cartesia_agents_version: str = "2026-08-14"
    engine_connect_timeout: float = Field(default=10.0, gt=0)
    ice_servers: str | None = Field(default=None, description="JSON list of RTCIceServer objects (STUN/TURN)")
    udp_ports: str | None = Field(default=None, description="UDP port range for WebRTC, e.g. 40000-40100")
    webrtc_loopback: bool = Field(default=False, description="dev: also offer a 127.0.0.1 ICE candidate")
    webhook_url: str | None = Field(default=None, pattern=r"^https?://",
                                    description="POST session.started/session.ended events here")
    webhook_secret: str | None = Field(default=None, description="HMAC-SHA256 key for X-Facecast-Signature")
    log_level: str = "INFO"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        names = ", ".join("FACECAST_" + ".".join(str(p) for p in e["loc"]).upper() for e in exc.errors())
        raise ConfigError(f"invalid configuration: {names}: {exc.errors()[0]['msg']}") from exc
