"""examples/echo_engine.py, the documented integration example, against the real ExternalEngine."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import serve

from facecast.config import Settings
from facecast.engines.config import ExternalEngineConfig
from facecast.engines.external import ExternalEngine
from facecast.errors import EngineConnectionError
from facecast.testing.host import RecordingHost

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "echo_engine.py"
SR = 24_000


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("echo_engine_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def voice(seconds: float, freq: float = 300.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (6000 * np.sin(2 * np.pi * freq * t)).astype(np.int16)


async def talk(engine: ExternalEngine, pcm: np.ndarray) -> None:
    """Like a browser mic: 20 ms pieces, paced (fast) so the bounded mic queue never drops."""
    for i in range(0, pcm.size, 480):
        engine.push_mic(pcm[i:i + 480], SR)
        await asyncio.sleep(0.002)


@pytest.fixture
async def example_url() -> AsyncIterator[tuple[str, Any]]:
    example = load_example()
    async with serve(example.make_handler(16000, "echo"), "127.0.0.1", 0,
                     process_request=example.make_auth("t0k")) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}", example


def make_engine(url: str, token: str = "t0k") -> tuple[RecordingHost, ExternalEngine]:
    host = RecordingHost(mode="explicit")
    config = ExternalEngineConfig.model_validate({
        "type": "external", "url": url, "audio": {"user": {"sample_rate": 16000}},
        "headers": {"Authorization": f"Bearer {token}"}})
    engine = ExternalEngine(config, host, Settings())
    host.engine = engine
    return host, engine


async def test_example_echoes_a_turn_and_handles_barge_in(example_url: tuple[str, Any]) -> None:
    host, engine = make_engine(example_url[0])
    host.start_clock(realtime=True)
    await engine.start()
    try:
        await talk(engine, np.concatenate([voice(1.0), np.zeros(int(0.8 * SR), np.int16)]))
        async with asyncio.timeout(5):
            while not any(e.kind == "started" for e in host.playback_events):  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        first = host.playback_events[0].segment
        assert first.uid == "turn-1"
        assert first.written / SR > 1.0          # the user's second of speech, echoed back
        await talk(engine, voice(0.2, freq=500.0))  # the user talks over the avatar
        async with asyncio.timeout(5):
            while not first.ended:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        assert first.interrupted and 0 < first.played_duration < 1.0
        assert {"type": "sdk.message", "data": {"caption": "(reply turn-1)"}} in host.sdk_events
    finally:
        await engine.close()
        await host.stop_clock()


async def test_example_refuses_a_wrong_token(example_url: tuple[str, Any]) -> None:
    _, engine = make_engine(example_url[0], token="wrong")
    with pytest.raises(EngineConnectionError, match="HTTP 401"):
        await engine.start()
