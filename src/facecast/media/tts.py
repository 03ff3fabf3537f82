"""Offline text-to-speech through the `espeak-ng` binary (no keys, no network).

Used by the Cartesia stand-in (greetings, replies) and by the `text-echo` engine. Text goes to
espeak-ng on stdin (never through a shell, never as an argument that could parse as an option);
espeak writes a WAV on stdout that we parse with `wave` and resample with libsoxr.

Voices are espeak-ng language names (`en-us`, `fr-fr`, ...) optionally followed by a variant
(`en-us+f3`, `en-gb+whisper`); `list_voices()` lists them all.
"""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import subprocess
import wave
from functools import lru_cache

import numpy as np
import soxr

from facecast.errors import FacecastError

logger = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
TIMEOUT_S = 30.0
MAX_TEXT_CHARS = 5000
RATE_WPM_RANGE = (80, 500)
PITCH_RANGE = (0, 99)


class TTSError(FacecastError):
    """Speech synthesis failed (espeak-ng missing, bad voice or arguments, timeout, bad output)."""

    code = "tts_error"


def _espeak_path() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise TTSError("espeak-ng is not installed (apt-get install espeak-ng)")
    return path


def _run_list(arg: str) -> str:
    try:
        proc = subprocess.run(
            [_espeak_path(), arg], capture_output=True, timeout=TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise TTSError(f"espeak-ng {arg} timed out") from exc
    if proc.returncode != 0:
        raise TTSError(f"espeak-ng {arg} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout.decode(errors="replace")


def _table_column(listing: str, column: int) -> list[str]:
    """Column `column` of an `espeak-ng --voices` table (header line skipped)."""
    values: list[str] = []
    for line in listing.splitlines()[1:]:
        parts = line.split()
        if len(parts) > column:
            values.append(parts[column])
    return values


@lru_cache(maxsize=1)
def _voice_table() -> str:
    return _run_list("--voices")


@lru_cache(maxsize=1)
def _languages() -> tuple[str, ...]:
    return tuple(dict.fromkeys(_table_column(_voice_table(), 1)))


@lru_cache(maxsize=1)
def _accepted_languages() -> frozenset[str]:
    """What espeak-ng's `-v` takes (case-insensitively): language names and voice file names,
    e.g. `en-us`, `en` (gmw/en), `fr`."""
    files = [f.rsplit("/", 1)[-1] for f in _table_column(_voice_table(), 4)]
    return frozenset(v.lower() for v in (*_languages(), *files))


@lru_cache(maxsize=1)
def _variants() -> tuple[str, ...]:
    files = _table_column(_run_list("--voices=variant"), 4)
    names = [f.split("/", 1)[1] for f in files if f.startswith("!v/")]
    return tuple(dict.fromkeys(names))


def list_voices() -> list[str]:
    """Every voice `synthesize` accepts: each language, then each `language+variant`."""
    languages = _languages()
    variants = _variants()
    return list(languages) + [f"{lang}+{var}" for lang in languages for var in variants]


def validate_voice(voice: str) -> bool:
    """True if `voice` is an installed espeak-ng language, optionally with a known `+variant`."""
    if not voice or voice.startswith("-") or any(c.isspace() for c in voice):
        return False
    lang, sep, variant = voice.partition("+")
    try:
        if lang.lower() not in _accepted_languages():
            return False
        return not sep or variant in _variants()
    except TTSError:
        return False


def _check_args(text: str, voice: str, rate_wpm: int, pitch: int, sample_rate: int) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise TTSError(f"text too long ({len(text)} > {MAX_TEXT_CHARS} characters)")
    if not validate_voice(voice):
        raise TTSError(f"unknown espeak-ng voice {voice!r}")
    if not RATE_WPM_RANGE[0] <= rate_wpm <= RATE_WPM_RANGE[1]:
        raise TTSError(f"rate_wpm must be within {RATE_WPM_RANGE}, got {rate_wpm}")
    if not PITCH_RANGE[0] <= pitch <= PITCH_RANGE[1]:
        raise TTSError(f"pitch must be within {PITCH_RANGE}, got {pitch}")
    if not 4000 <= sample_rate <= 192_000:
        raise TTSError(f"unsupported sample_rate {sample_rate}")


def _command(voice: str, rate_wpm: int, pitch: int) -> list[str]:
    # No text argument: espeak-ng reads it from stdin, so text can never parse as an option.
    return [_espeak_path(), "--stdout", "-v", voice, "-s", str(rate_wpm), "-p", str(pitch)]


def _decode_wav(data: bytes, sample_rate: int) -> np.ndarray:
    """espeak-ng's streamed WAV (its header sizes are placeholders) → int16 mono at `sample_rate`."""
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise TTSError(f"espeak-ng produced an unreadable WAV: {exc}") from exc
    if width != 2:
        raise TTSError(f"espeak-ng produced {8 * width}-bit audio, expected 16-bit")
    pcm = np.frombuffer(frames[: len(frames) - len(frames) % (2 * channels)], dtype="<i2")
    if channels > 1:
        pcm = (pcm.reshape(-1, channels).astype(np.int32).sum(axis=1) // channels).astype(np.int16)
    if rate != sample_rate and pcm.size:
        pcm = soxr.resample(pcm, rate, sample_rate, quality="HQ")
    return np.ascontiguousarray(pcm, dtype=np.int16)


def synthesize(
    text: str,
    *,
    voice: str = "en-us",
    rate_wpm: int = 165,
    pitch: int = 50,
    sample_rate: int = 24000,
) -> np.ndarray:
    """Speak `text`; returns int16 mono samples at `sample_rate`. Blocks: use `synthesize_async`
    from a coroutine."""
    _check_args(text, voice, rate_wpm, pitch, sample_rate)
    if not text.strip():
        return np.zeros(0, dtype=np.int16)
    try:
        proc = subprocess.run(
            _command(voice, rate_wpm, pitch),
            input=text.encode(),
            capture_output=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise TTSError(f"espeak-ng timed out after {TIMEOUT_S:.0f} s") from exc
    if proc.returncode != 0:
        raise TTSError(f"espeak-ng failed: {proc.stderr.decode(errors='replace').strip()}")
    return _decode_wav(proc.stdout, sample_rate)


async def synthesize_async(
    text: str,
    *,
    voice: str = "en-us",
    rate_wpm: int = 165,
    pitch: int = 50,
    sample_rate: int = 24000,
) -> np.ndarray:
    """`synthesize` without blocking the event loop (an asyncio subprocess; killed on cancel)."""
    # Voice listing runs a blocking subprocess once; keep it off the loop as well.
    await asyncio.to_thread(_check_args, text, voice, rate_wpm, pitch, sample_rate)
    if not text.strip():
        return np.zeros(0, dtype=np.int16)
    proc = await asyncio.create_subprocess_exec(
        *_command(voice, rate_wpm, pitch),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(text.encode()), TIMEOUT_S)
    except TimeoutError as exc:
        raise TTSError(f"espeak-ng timed out after {TIMEOUT_S:.0f} s") from exc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise TTSError(f"espeak-ng failed: {stderr.decode(errors='replace').strip()}")
    return await asyncio.to_thread(_decode_wav, stdout, sample_rate)
