"""facecast.media.tts against the real espeak-ng binary."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from facecast.media import tts


def test_synthesize_returns_int16_speech_at_requested_rate() -> None:
    pcm24 = tts.synthesize("Hello there.", sample_rate=24000)
    pcm16 = tts.synthesize("Hello there.", sample_rate=16000)
    assert pcm24.dtype == np.int16 and pcm24.ndim == 1
    assert 0.4 < pcm24.size / 24000 < 3.0
    # Same utterance, resampled: durations agree to a few ms.
    assert abs(pcm24.size / 24000 - pcm16.size / 16000) < 0.01
    assert np.abs(pcm24).max() > 3000  # actually audible


def test_rate_changes_duration_and_empty_text_is_silence() -> None:
    slow = tts.synthesize("one two three four five", rate_wpm=120)
    fast = tts.synthesize("one two three four five", rate_wpm=300)
    assert fast.size < 0.7 * slow.size
    assert tts.synthesize("   ").size == 0


def test_text_that_looks_like_an_option_is_spoken_not_parsed() -> None:
    pcm = tts.synthesize("-v zz --help")
    assert pcm.size > 2400


def test_voices() -> None:
    voices = tts.list_voices()
    assert "en-us" in voices and "en-us+f3" in voices
    assert tts.validate_voice("en-us")
    assert tts.validate_voice("en-gb+whisper")
    assert tts.validate_voice("en") and tts.validate_voice("EN-US") and tts.validate_voice("fr")
    assert not tts.validate_voice("en-us+nope")
    assert not tts.validate_voice("klingon")
    assert not tts.validate_voice("--help")
    assert not tts.validate_voice("")


@pytest.mark.parametrize(
    "kwargs",
    [{"voice": "klingon"}, {"rate_wpm": 10}, {"pitch": 150}, {"sample_rate": 10}],
)
def test_bad_arguments_raise_tts_error(kwargs: dict[str, object]) -> None:
    with pytest.raises(tts.TTSError):
        tts.synthesize("hi", **kwargs)  # type: ignore[arg-type]


async def test_async_does_not_block_the_loop() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    task = asyncio.create_task(ticker())
    start = time.monotonic()
    pcm = await tts.synthesize_async("This sentence is long enough to take a little while.")
    elapsed = time.monotonic() - start
    task.cancel()
    assert pcm.size > 24000
    assert ticks >= max(1, int(elapsed / 0.005) // 4)


async def test_async_matches_sync() -> None:
    a = await tts.synthesize_async("Same words.", voice="en-us+f3", sample_rate=16000)
    b = tts.synthesize("Same words.", voice="en-us+f3", sample_rate=16000)
    assert np.array_equal(a, b)
