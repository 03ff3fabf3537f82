"""The `external` engine config: optional fields sent as `null` mean "not given"."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError
from tests.conftest import AppCtx

from facecast.engines.config import EngineConfig, ExternalEngineConfig

URL = "ws://127.0.0.1:9/agent"
engine_config: TypeAdapter[Any] = TypeAdapter(EngineConfig)


@pytest.mark.parametrize("extra", [
    {"headers": None},
    {"audio": None},
    {"audio": {"user": None}},
    {"audio": {"user": {"sample_rate": None}}},
    {"headers": None, "audio": None},
])
def test_null_optionals_are_not_given(extra: dict[str, Any]) -> None:
    config = engine_config.validate_python({"type": "external", "url": URL, **extra})
    assert isinstance(config, ExternalEngineConfig)
    assert config.headers == {} and config.audio.user.sample_rate == 24000


def test_null_is_still_refused_where_a_value_is_required() -> None:
    for bad in ({"type": "external", "url": None},
                {"type": "external", "url": URL, "headers": {"X-Key": None}}):
        with pytest.raises(ValidationError):
            engine_config.validate_python(bad)


def test_null_text_echo_tts_takes_the_defaults() -> None:
    config = engine_config.validate_python({"type": "text-echo", "tts": None})
    assert config.public() == {"type": "text-echo",
                               "tts": {"voice": "en-us", "rate": 165, "pitch": 50}}
    config = engine_config.validate_python({"type": "text-echo",
                                            "tts": {"voice": None, "rate": None, "pitch": 60}})
    assert config.public()["tts"] == {"voice": "en-us", "rate": 165, "pitch": 60}


async def test_session_created_with_null_headers_and_audio(ctx: AppCtx) -> None:
    ext = {"type": "external", "url": URL, "headers": None, "audio": None}
    sid = (await ctx.create_session(conversation_engine=ext))["session_id"]
    info = (await ctx.client.get(f"/api/v1/sessions/{sid}", headers=ctx.auth)).json()
    assert info["conversation_engine"] == {"type": "external", "url": URL,
                                           "audio": {"user": {"sample_rate": 24000}}}
    ext = {"type": "external", "url": URL, "audio": {"user": None}}
    await ctx.create_session(conversation_engine=ext)
