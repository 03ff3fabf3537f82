"""Personas: what the Cartesia stand-in says on its own, without keys or an LLM.

A persona reacts to the two things a Line agent sees (`CallStarted`, `UserTurnEnded`) by calling
`say()` / `end_call()` on the call. A reply runs as a task the call owns; a new user turn
cancels it, like Cartesia cancels a running Line reply.

The built-in demo persona is a parrot: it greets, then plays each user turn back pitch-shifted
(same duration), and says goodbye and ends the call after `turns` user turns.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import soxr

from facecast.media.tts import synthesize_async

logger = logging.getLogger(__name__)


class CallControl(Protocol):
    """The part of a stand-in connection a persona may use."""

    user_turns: int

    @property
    def sample_rate(self) -> int: ...

    @property
    def introduction(self) -> str | None: ...

    async def say(self, speech: str | np.ndarray, *, interruptible: bool = True,
                  text: str | None = None) -> Any: ...

    async def end_call(self, reason: str = "agent_ended") -> None: ...


class Persona(Protocol):
    async def on_call_started(self, call: CallControl) -> None: ...

    async def on_user_turn_ended(self, call: CallControl, user_pcm: np.ndarray) -> None: ...


def _time_stretch(x: np.ndarray, factor: float, n_fft: int) -> np.ndarray:
    """Phase-vocoder time stretch of float audio by `factor` (>1 = longer)."""
    hop_s = n_fft // 4
    hop_a = hop_s / factor
    window = np.hanning(n_fft)
    n_frames = max(1, int((x.size - n_fft) / hop_a) + 1)
    bins = np.arange(n_fft // 2 + 1)
    expected = 2.0 * np.pi * bins * hop_a / n_fft
    out = np.zeros(n_frames * hop_s + n_fft)
    norm = np.zeros_like(out)
    prev_phase = np.zeros(bins.size)
    acc = np.zeros(bins.size)
    for i in range(n_frames):
        start = int(round(i * hop_a))
        frame = x[start:start + n_fft]
        if frame.size < n_fft:
            frame = np.pad(frame, (0, n_fft - frame.size))
        spectrum = np.fft.rfft(frame * window)
        phase = np.angle(spectrum)
        if i == 0:
            acc = phase.copy()
        else:
            delta = phase - prev_phase - expected
            delta = (delta + np.pi) % (2.0 * np.pi) - np.pi
            acc += (expected + delta) * (hop_s / hop_a)
        prev_phase = phase
        frame_out = np.fft.irfft(np.abs(spectrum) * np.exp(1j * acc), n_fft) * window
        out[i * hop_s:i * hop_s + n_fft] += frame_out
        norm[i * hop_s:i * hop_s + n_fft] += window**2
    return out / np.maximum(norm, 1e-3)


def pitch_shift(pcm: np.ndarray, sample_rate: int, semitones: float) -> np.ndarray:
    """Shift int16 mono audio by `semitones`, keeping its duration (phase vocoder + resample).
    CPU-bound: call it through `asyncio.to_thread` from a coroutine."""
    if pcm.size == 0 or semitones == 0:
        return pcm.copy()
    factor = 2.0 ** (semitones / 12.0)
    n_fft = 1 << int(np.ceil(np.log2(sample_rate * 0.04)))  # ~40 ms analysis window
    pad = n_fft
    x = np.concatenate([np.zeros(pad), pcm.astype(np.float64) / 32768.0, np.zeros(2 * pad)])
    stretched = _time_stretch(x, factor, n_fft)
    shifted = soxr.resample(stretched, sample_rate * factor, sample_rate, quality="HQ")
    shifted = shifted[pad:pad + pcm.size]
    if shifted.size < pcm.size:
        shifted = np.pad(shifted, (0, pcm.size - shifted.size))
    return np.clip(np.round(shifted * 32768.0), -32768, 32767).astype(np.int16)


@dataclass(frozen=True)
class ParrotPersona:
    """The keyless demo agent: greet, parrot each user turn back (pitch-shifted), end after
    `turns` user turns with a goodbye."""

    greeting: str = "Hi! I'm the facecast demo agent. Say something and I'll repeat it back."
    prefix: str = "You said:"
    goodbye: str = "That's all for now. Goodbye!"
    turns: int = 5
    semitones: float = 4.0
    voice: str = "en-us"
    max_parrot_s: float = 15.0

    async def _tts(self, call: CallControl, text: str) -> np.ndarray:
        return await synthesize_async(text, voice=self.voice, sample_rate=call.sample_rate)

    async def on_call_started(self, call: CallControl) -> None:
        text = call.introduction if call.introduction is not None else self.greeting
        if text.strip():
            await call.say(await self._tts(call, text), text=text)

    async def on_user_turn_ended(self, call: CallControl, user_pcm: np.ndarray) -> None:
        last = call.user_turns >= self.turns
        clip = user_pcm[: int(self.max_parrot_s * call.sample_rate)]
        # Prepare everything first, then queue it back to back (one agent turn, no gaps).
        prefix = await self._tts(call, self.prefix) if self.prefix else None
        parrot = await asyncio.to_thread(pitch_shift, clip, call.sample_rate, self.semitones)
        goodbye = await self._tts(call, self.goodbye) if last and self.goodbye else None
        if prefix is not None:
            await call.say(prefix, text=self.prefix)
        if parrot.size:
            await call.say(parrot)
        if last:
            logger.info("parrot: %d user turns, ending the call", call.user_turns)
            if goodbye is not None:
                await call.say(goodbye, interruptible=False, text=self.goodbye)
            await call.end_call("agent_ended")


DEFAULT_PERSONA = ParrotPersona()
