"""Lip-sync analysis, avatar assets and the CPU `warp2d` talking-head renderer.

Agent speech (24 kHz s16 mono) drives a 25 fps portrait: frame n shows audio samples
[960 n, 960 n + 960). Sessions are synchronous; run them in a worker thread.
"""

from facecast.render.avatar import (
    Avatar,
    AvatarError,
    PreparedAvatar,
    avatar_presets,
    builtin_avatar,
    load_avatar,
    save_avatar,
)
from facecast.render.geometry import FaceGeometry
from facecast.render.lipsync import LOOKAHEAD_SAMPLES, VISEMES, LipSyncAnalyzer, MouthFrame
from facecast.render.prepare import prepare_avatar
from facecast.render.presets import (
    DEFAULT_PRESET,
    FPS,
    PRESETS,
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    RenderPreset,
    resolve_preset,
)
from facecast.render.session import BACKGROUNDS, RenderSession, Warp2DSession, open_render_session

__all__ = [
    "BACKGROUNDS",
    "DEFAULT_PRESET",
    "FPS",
    "LOOKAHEAD_SAMPLES",
    "PRESETS",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "VISEMES",
    "Avatar",
    "AvatarError",
    "FaceGeometry",
    "LipSyncAnalyzer",
    "MouthFrame",
    "PreparedAvatar",
    "RenderPreset",
    "RenderSession",
    "Warp2DSession",
    "avatar_presets",
    "builtin_avatar",
    "load_avatar",
    "open_render_session",
    "prepare_avatar",
    "resolve_preset",
    "save_avatar",
]
