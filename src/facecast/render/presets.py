"""Render presets and the media clock constants shared by the renderer."""

from __future__ import annotations

from dataclasses import dataclass

SAMPLE_RATE = 24000
"""Agent speech sample rate (Hz), mono s16."""
FPS = 25
"""Video frame rate."""
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS
"""Frame n covers audio samples [960 n, 960 n + 960)."""


@dataclass(frozen=True)
class RenderPreset:
    """Output geometry of a render session (square frames by default)."""

    name: str
    width: int
    height: int
    fps: int = FPS


PRESETS: dict[str, RenderPreset] = {
    "small": RenderPreset("small", 256, 256),
    "default": RenderPreset("default", 512, 512),
    "large": RenderPreset("large", 768, 768),
}
DEFAULT_PRESET = "default"


def resolve_preset(preset: str | RenderPreset) -> RenderPreset:
    """Return the preset object for a name (``ValueError`` naming the choices if unknown)."""
    if isinstance(preset, RenderPreset):
        if preset.fps != FPS:
            raise ValueError(f"render presets must run at {FPS} fps, got {preset.fps}")
        if preset.width < 64 or preset.height < 64 or preset.width % 2 or preset.height % 2:
            raise ValueError("render preset sizes must be even and at least 64 px")
        return preset
    try:
        return PRESETS[preset]
    except KeyError:
        raise ValueError(
            f"unknown render preset {preset!r}; choose one of {sorted(PRESETS)}"
        ) from None
