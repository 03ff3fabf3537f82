"""TextEchoEngine with the real espeak-ng TTS and a real playout clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from facecast.config import Settings
from facecast.engines.config import TextEchoEngineConfig
from facecast.engines.text_echo import TextEchoEngine
from facecast.errors import EngineConnectionError
from facecast.media import tts
from facecast.sessions.state import TaskState
from facecast.testing.host import RecordingHost

Q, S, D, C = TaskState.QUEUED, TaskState.SPEAKING, TaskState.DONE, TaskState.CANCELLED


def make(voice: str = "en-us", realtime: bool = True) -> tuple[RecordingHost, TextEchoEngine]:
    host = RecordingHost(mode="explicit")
    config = TextEchoEngineConfig.model_validate(
        {"type": "text-echo", "tts": {"voice": voice, "rate": 300, "pitch": 50}})
    engine = TextEchoEngine(config, host, Settings())
    host.engine = engine
    host.start_clock(realtime=realtime)
    return host, engine


@pytest.fixture
async def rig() -> AsyncIterator[tuple[RecordingHost, TextEchoEngine]]:
    host, engine = make()
    await engine.start()
    yield host, engine
    await engine.close()
    await host.stop_clock()


def states(host: RecordingHost, task_id: str) -> list[TaskState]:
    return [s for t, s in host.task_states if t == task_id]


async def wait_states(host: RecordingHost, n: int, timeout: float = 10.0) -> None:
    async def _wait() -> None:
        while len(host.task_states) < n:  # noqa: ASYNC110 (host records synchronously)
            await asyncio.sleep(0.01)
    await asyncio.wait_for(_wait(), timeout)


async def test_tasks_are_spoken_in_order_with_states(
        rig: tuple[RecordingHost, TextEchoEngine]) -> None:
    host, engine = rig
    texts = {"t1": "One.", "t2": "Two two.", "t3": "Three three three."}
    for task_id, text in texts.items():
        await engine.submit_task(task_id, text)
    assert host.task_states == [("t1", Q), ("t2", Q), ("t3", Q)]
    await wait_states(host, 9)
    assert host.task_states[3:] == [("t1", S), ("t1", D), ("t2", S), ("t2", D),
                                    ("t3", S), ("t3", D)]
    # one segment per task, in order, and exactly the synthesised speech was played
    uids = [ev.segment.uid for ev in host.playback_events if ev.kind == "started"]
    assert uids == ["t1", "t2", "t3"]
    expected = np.concatenate([tts.synthesize(t, rate_wpm=300) for t in texts.values()])
    assert host.played_audio().size == expected.size
    assert not host.end_requests


async def test_a_text_with_nothing_to_say_ends_in_its_turn(
        rig: tuple[RecordingHost, TextEchoEngine]) -> None:
    """Whitespace synthesises to no audio; its task still ends after the ones before it."""
    host, engine = rig
    await engine.submit_task("t1", "One two three.")
    await engine.submit_task("blank", " \n\t ")
    await engine.submit_task("t3", "Four.")
    await wait_states(host, 9)
    assert host.task_states[3:] == [("t1", S), ("t1", D), ("blank", S), ("blank", D),
                                    ("t3", S), ("t3", D)]
    assert not host.end_requests


async def test_interrupt_cancels_the_speaking_task_and_the_next_one_plays(
        rig: tuple[RecordingHost, TextEchoEngine]) -> None:
    host, engine = rig
    await engine.submit_task("long", "This is a rather long sentence that will be cut short.")
    await wait_states(host, 2)                       # queued, speaking
    await asyncio.sleep(0.2)
    host.speech.clear()                              # barge-in
    await engine.submit_task("after", "Next.")
    await wait_states(host, 6)
    assert states(host, "long") == [Q, S, C]
    assert states(host, "after") == [Q, S, D]


async def test_close_cancels_queued_and_speaking_tasks() -> None:
    host, engine = make()
    await engine.start()
    await engine.submit_task("a", "A first sentence that takes a moment to say.")
    await engine.submit_task("b", "A second one.")
    await wait_states(host, 3)                       # a speaking
    await engine.close()
    await host.stop_clock()
    assert states(host, "a") == [Q, S, C]
    assert states(host, "b") == [Q, C]
    await engine.submit_task("c", "Too late.")
    assert states(host, "c") == [C]


async def test_tasks_submitted_before_start_are_kept_in_order() -> None:
    host, engine = make(realtime=False)
    await engine.submit_task("early1", "Hello.")
    await engine.submit_task("early2", "Again.")
    await engine.start()
    await wait_states(host, 6)
    assert [t for t, s in host.task_states if s == S] == ["early1", "early2"]
    await engine.close()
    await host.stop_clock()


async def test_mic_is_ignored(rig: tuple[RecordingHost, TextEchoEngine]) -> None:
    host, engine = rig
    engine.push_mic(np.ones(2400, dtype=np.int16), 24000)
    await asyncio.sleep(0.1)
    assert host.played_audio().size == 0


async def test_unknown_voice_fails_clearly_at_start() -> None:
    host, engine = make(voice="zz-notavoice")
    with pytest.raises(EngineConnectionError, match="zz-notavoice"):
        await engine.start()
    await engine.close()
    await host.stop_clock()
