"""The aiortc/aioice adjustments and the peer sink's buffers."""

from __future__ import annotations

import aioice
import av
import numpy as np
import pytest

from facecast.transport import patches
from facecast.transport.patches import BucketedVp8Encoder, IcePolicy, ice_policy
from facecast.transport.tracks import PeerSink, stack_alpha

patches.install()


def test_parse_ports() -> None:
    assert IcePolicy.parse_ports("40000-40100") == (40000, 40100)
    assert IcePolicy.parse_ports("41000") == (41000, 41000)
    assert IcePolicy.parse_ports(None) is None
    for bad in ("abc", "50000-40000", "80-90"):
        with pytest.raises(ValueError):
            IcePolicy.parse_ports(bad)


async def test_host_candidates_follow_the_policy() -> None:
    conn = aioice.Connection(ice_controlling=True)
    with ice_policy(IcePolicy(loopback_only=True, port_range=(40000, 40010))):
        await conn.gather_candidates()
    try:
        assert [(c.host, c.type) for c in conn.local_candidates] == [("127.0.0.1", "host")]
        assert 40000 <= conn.local_candidates[0].port <= 40010
    finally:
        await conn.close()
    plain = aioice.Connection(ice_controlling=True, use_ipv6=False)
    await plain.gather_candidates()   # no policy: aioice's own behaviour, no loopback
    try:
        assert "127.0.0.1" not in [c.host for c in plain.local_candidates]
    finally:
        await plain.close()
    looped = aioice.Connection(ice_controlling=True, use_ipv6=False)
    with ice_policy(IcePolicy(loopback=True)):
        await looped.gather_candidates()
    try:
        assert "127.0.0.1" in [c.host for c in looped.local_candidates]
    finally:
        await looped.close()


def test_vp8_bitrate_wobble_does_not_recreate_the_encoder() -> None:
    enc = BucketedVp8Encoder()
    img = np.random.default_rng(0).integers(0, 255, (512, 512, 3), dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
    enc.encode(frame)
    codec = enc.codec
    for estimate in (640_000, 560_000, 700_000, 520_000, 660_000, 590_000):   # ±15 % REMB noise
        enc.target_bitrate = estimate
        enc.encode(frame)
    assert enc.codec is codec
    enc.target_bitrate = 5_000_000          # far above the 512x512 cap
    assert enc.target_bitrate <= 1_000_000
    enc.target_bitrate = 200_000            # a real drop moves down at once
    assert enc.target_bitrate == 250_000


def test_sink_is_bounded_and_flush_reports_dropped_samples() -> None:
    sink = PeerSink(hold_av=False)
    pcm = np.ones(960, np.int16)
    for i in range(10):
        sink.push_audio(i, pcm)
        sink.push_video(i, np.zeros((4, 4, 3), np.uint8))
    assert sink.audio_dropped == 12 * 480      # 20 chunks pushed, 8 kept
    assert sink.flush() == 8 * 480
    assert sink.flush() == 0


def test_stack_alpha_layout() -> None:
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 10
    rgba[..., 3] = 200
    out = stack_alpha(rgba)
    assert out.shape == (4, 3, 3)
    assert (out[:2, :, 0] == 10).all() and (out[2:] == 200).all()
