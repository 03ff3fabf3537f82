"""The peer's media pacing and timing: what the receiver needs for lip-sync and a clean barge-in."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from aiortc.rtcrtpreceiver import RTCRtpReceiver
from aiortc.rtp import RtcpSrPacket, RtpPacket

from facecast.transport import patches
from facecast.transport.client import FacecastClient
from facecast.transport.standin import MOUTH
from facecast.transport.tracks import AUDIO_SR_LEAD_S, PeerSink

patches.install()


def test_audio_leaves_in_20ms_steps_of_its_media_time() -> None:
    sink = PeerSink(hold_av=False)
    sink.push_audio(10, np.ones(960, np.int16))
    due = [sink.audio_due(pts) for pts in (9600, 10080, 10560)]
    assert due[1] - due[0] == pytest.approx(0.02)
    assert due[2] - due[1] == pytest.approx(0.02)
    sink.video_lag = 0.03
    sink.hold_av = True
    assert sink.audio_due(9600) - due[0] == pytest.approx(0.03)   # the A/V hold-back


async def test_flush_turns_held_audio_into_silence_without_a_gap() -> None:
    sink = PeerSink(hold_av=False)
    speech = np.full(960, 9000, np.int16)
    sink.push_audio(10, speech)          # media time 0.40-0.44 s
    sink.push_audio(11, speech)          # pushed at once: frame 10 is already due
    assert sink.flush() == 4 * 480       # every held sample of speech, reported dropped
    assert sink.flush() == 0
    got = [await asyncio.wait_for(sink.next_audio(), 1.0) for _ in range(4)]
    assert [c.pts for c in got] == [9600, 10080, 10560, 11040]   # no hole in the timeline
    assert all(not c.pcm.any() for c in got)                      # and nothing of the speech


def test_media_clock_ignores_a_late_tick() -> None:
    sink = PeerSink()
    t0 = time.monotonic()
    sink.push_audio(0, np.zeros(960, np.int16))
    clock = sink.media_clock(t0 + 1.0)
    assert clock is not None and 0.99 < clock <= 1.0
    sink._tick(1, t0 + 0.04 + 0.030)     # a tick 30 ms late moves nothing
    assert sink.media_clock(t0 + 1.0) == pytest.approx(clock)


@pytest.mark.slow
async def test_sender_reports_put_audio_and_video_of_one_frame_at_one_instant(server, monkeypatch) -> None:
    """The browser lines audio up with video through the RTCP sender reports: the first loud
    audio packet and the first open-mouth picture of one utterance must map to the same instant
    (the picture leaves later than its audio, after render + VP8), less the deliberate audio lead
    that offsets Chrome's lip-sync dead band (`AUDIO_SR_LEAD_S`)."""
    srs: dict[RTCRtpReceiver, list[tuple[int, int]]] = {}
    loud: dict[RTCRtpReceiver, list[int]] = {}
    orig_rtcp, orig_rtp = RTCRtpReceiver._handle_rtcp_packet, RTCRtpReceiver._handle_rtp_packet

    async def on_rtcp(self: RTCRtpReceiver, packet: Any) -> None:
        if isinstance(packet, RtcpSrPacket):
            srs.setdefault(self, []).append((packet.sender_info.ntp_timestamp,
                                             packet.sender_info.rtp_timestamp))
        await orig_rtcp(self, packet)

    async def on_rtp(self: RTCRtpReceiver, packet: RtpPacket, arrival_time_ms: int) -> None:
        level = packet.extensions.audio_level
        if level is not None and level[1] < 30:       # louder than -30 dBov
            loud.setdefault(self, []).append(packet.timestamp)
        await orig_rtp(self, packet, arrival_time_ms)

    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtcp_packet", on_rtcp)
    monkeypatch.setattr(RTCRtpReceiver, "_handle_rtp_packet", on_rtp)
    rt = server.manager.create()
    client = FacecastClient(server.base_url, rt.token, keep_frames=200)
    await client.connect()
    try:
        receivers = {r.track.kind: r for r in client.pc.getReceivers()}
        audio, video = receivers["audio"], receivers["video"]
        deadline = time.monotonic() + 8
        while (len(srs.get(audio, [])) < 2  # noqa: ASYNC110 (aiortc offers no event for an SR)
               or len(srs.get(video, [])) < 2) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        mark = time.monotonic()
        t = np.arange(24_000) / 24_000
        rt.speech.write_nowait((12_000 * np.sin(2 * np.pi * 220 * t)).astype(np.int16))
        await asyncio.sleep(1.5)
        assert loud.get(audio), "no loud audio packet"
        opened = [f for f in client.video_frames
                  if f.t > mark and f.image[MOUTH[0], MOUTH[1]].mean() > 100]
        assert opened, "the mouth never opened"
        video_origin = video._RTCRtpReceiver__timestamp_mapper._origin  # type: ignore[attr-defined]
        v_ts = (opened[0].pts + video_origin) & 0xFFFFFFFF
        a_ts = loud[audio][0]
        a_ntp, a_rtp = srs[audio][-1]
        v_ntp, v_rtp = srs[video][-1]

        def at(ts: int, ntp: int, rtp: int, rate: int) -> float:
            delta = ((ts - rtp + 2**31) % 2**32) - 2**31
            return ntp / 2**32 + delta / rate

        offset_ms = 1000 * (at(a_ts, a_ntp, a_rtp, 48_000) - at(v_ts, v_ntp, v_rtp, 90_000))
        assert abs(offset_ms + 1000 * AUDIO_SR_LEAD_S) <= 10, offset_ms
    finally:
        await client.close()
