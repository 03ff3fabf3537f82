"""Conversation engines, one module each, behind the `Engine` protocol (see `base.py`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from facecast.engines.config import (
    CartesiaEngineConfig,
    EngineConfig,
    ExternalEngineConfig,
    TextEchoEngineConfig,
)

if TYPE_CHECKING:
    from facecast.config import Settings
    from facecast.engines.base import Engine, EngineHost


def speech_mode_for(config: EngineConfig) -> Literal["auto", "explicit"]:
    """Cartesia has no turn markers (segments open/close on audio/drain); the others say so."""
    return "auto" if isinstance(config, CartesiaEngineConfig) else "explicit"


def create_engine(config: EngineConfig, host: EngineHost, settings: Settings) -> Engine:
    """Build the engine for a session's `conversation_engine` payload (not yet connected)."""
    if isinstance(config, CartesiaEngineConfig):
        from facecast.engines.cartesia import CartesiaEngine

        return CartesiaEngine(config, host, settings)
    if isinstance(config, ExternalEngineConfig):
        from facecast.engines.external import ExternalEngine

        return ExternalEngine(config, host, settings)
    if isinstance(config, TextEchoEngineConfig):
        from facecast.engines.text_echo import TextEchoEngine

        return TextEchoEngine(config, host, settings)
    raise TypeError(f"no engine for {type(config).__name__}")
