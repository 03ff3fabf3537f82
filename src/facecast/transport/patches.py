"""The aiortc / aioice adjustments facecast relies on, installed once per process.

Measured in `shared/design/transport-notes.md`:

- audio receive jitter buffer `prefetch=4` → `AUDIO_PREFETCH` (mic latency 95 → 47 ms), and each
  audio packet handed out on arrival instead of when its successor arrives (−20 ms);
- SCTP user-data chunks of 1100 bytes (1200 overflows a 1280-byte MTU and the data channel stalls);
- VP8 encoder re-created (a keyframe) whenever REMB moves the target by > 10 %: the target is
  bucketed with hysteresis and capped, so small estimate changes never re-create the encoder;
  RGB → yuv420p through OpenCV instead of swscale, no temporal denoiser, speed -12 instead of
  -6 (≈2 ms less CPU per 512x512 frame: 3.4 → 1.5 ms, Y-PSNR 52.1 → 51.6 dB);
- Opus RTP timestamps taken from the frame's `pts` (our sample counter);
- RTCP sender reports stamped from the track's media clock (`track.media_clock(now)`, where a
  track offers one) instead of the send time of the last packet, so the browser's lip-sync maps
  audio and video frame n to the same instant however long rendering and encoding took;
- received audio decoded on the loop, not in aiortc's per-receiver thread (two thread hand-offs
  per 20 ms mic packet cost more than the Opus decode);
- ICE host candidates follow a per-peer `IcePolicy` carried in a `ContextVar`: an extra
  127.0.0.1 candidate (aioice drops loopback; needed for a browser on the same machine) and a
  UDP port range for host sockets (aioice binds ephemeral ports).

The ICE policy is read inside `RTCPeerConnection.setLocalDescription()` (gathering runs in tasks
that copy the caller's context), so wrap that call in `with ice_policy(policy): ...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fractions
import logging
import multiprocessing
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aioice.ice
import av
import cv2
import numpy as np
from aiortc import clock as rtp_clock
from aiortc import rtcrtpreceiver, rtcrtpsender, rtcsctptransport
from aiortc.codecs import get_encoder as _aiortc_get_encoder
from aiortc.codecs.opus import OpusEncoder
from aiortc.codecs.vpx import Vp8Encoder, number_of_threads
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.mediastreams import VIDEO_TIME_BASE, convert_timebase
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtp import RtcpSrPacket, RtpPacket
from av.video.codeccontext import VideoCodecContext

log = logging.getLogger(__name__)

AUDIO_PREFETCH = 1
AUDIO_IMMEDIATE = True     # received audio packets leave the jitter buffer at once (see below)
SCTP_USERDATA_MAX_LENGTH = 1100
OPUS_RTP_RATE = 48_000
OPUS_BITRATE = 48_000
# VP8 target buckets (bit/s); the cap scales with the picture area (1 Mbit/s for 512x512).
VP8_BUCKETS = (250_000, 400_000, 600_000, 800_000, 1_000_000, 1_250_000, 1_500_000)
VP8_BITS_PER_PIXEL_CAP = 1_000_000 / (512 * 512)
VP8_MIN_SWITCH_S = 8.0     # a move up waits this long after the last switch
# libvpx realtime speed. aiortc uses -6; on our rendered 512x512 speech clips -12 encodes in
# 1.28 ms instead of 1.69 ms at the same bitrate, Y-PSNR 51.6 dB instead of 52.1 dB.
VP8_CPU_USED = "-12"
VP8_DOWN_RATIO = 0.8       # the estimate must fall below 80 % of the bucket to move down


@dataclass(frozen=True)
class IcePolicy:
    loopback: bool = False                  # also offer a 127.0.0.1 host candidate
    loopback_only: bool = False             # (tests) offer nothing but 127.0.0.1
    port_range: tuple[int, int] | None = None

    @staticmethod
    def parse_ports(spec: str | None) -> tuple[int, int] | None:
        """"40000-40100" → (40000, 40100); None/"" → None. Raises ValueError on junk."""
        if not spec:
            return None
        lo_s, sep, hi_s = spec.partition("-")
        lo = int(lo_s)
        hi = int(hi_s) if sep else lo
        if not (1024 <= lo <= hi <= 65535):
            raise ValueError(f"bad UDP port range {spec!r}")
        return lo, hi


_policy: ContextVar[IcePolicy | None] = ContextVar("facecast_ice_policy", default=None)


@contextlib.contextmanager
def ice_policy(policy: IcePolicy) -> Iterator[None]:
    token = _policy.set(policy)
    try:
        yield
    finally:
        _policy.reset(token)


# -- ICE: host addresses and port range ----------------------------------------------------------
_orig_get_host_addresses = aioice.ice.get_host_addresses
_orig_get_component_candidates = aioice.ice.Connection.get_component_candidates


def _get_host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    policy = _policy.get()
    if policy is not None and policy.loopback_only:
        return ["127.0.0.1"] if use_ipv4 else []
    addresses = _orig_get_host_addresses(use_ipv4=use_ipv4, use_ipv6=use_ipv6)
    if policy is not None and policy.loopback and use_ipv4 and "127.0.0.1" not in addresses:
        addresses.insert(0, "127.0.0.1")
    return addresses


async def _bind_in_range(conn: aioice.ice.Connection, address: str,
                         port_range: tuple[int, int]) -> tuple[Any, Any] | None:
    loop = asyncio.get_running_loop()
    ports = list(range(port_range[0], port_range[1] + 1))
    random.shuffle(ports)
    for port in ports:
        try:
            return await loop.create_datagram_endpoint(
                lambda: aioice.ice.StunProtocol(conn), local_addr=(address, port))
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue
            log.info("could not bind %s: %s", address, exc)
            return None
    log.warning("no free UDP port in %d-%d on %s", *port_range, address)
    return None


async def _get_component_candidates(self: aioice.ice.Connection, component: int,
                                    addresses: list[str], timeout: int = 5) -> list[Any]:
    policy = _policy.get()
    if policy is None or policy.port_range is None or not addresses:
        return await _orig_get_component_candidates(self, component, addresses, timeout)
    # Host sockets inside the configured range; STUN/TURN candidates by aioice as usual.
    candidates = []
    for address in addresses:
        bound = await _bind_in_range(self, address, policy.port_range)
        if bound is None:
            continue
        transport, protocol = bound
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF,
                            aioice.turn.UDP_SOCKET_BUFFER_SIZE)
        host, port = transport.get_extra_info("sockname")[:2]
        protocol.local_candidate = aioice.Candidate(
            foundation=aioice.ice.candidate_foundation("host", "udp", host),
            component=component, transport="udp",
            priority=aioice.ice.candidate_priority(component, "host"),
            host=host, port=port, type="host")
        candidates.append(protocol.local_candidate)
        self._protocols.append(protocol)
        if self.stun_server and ":" not in host:
            try:
                cand, _ = await asyncio.wait_for(
                    aioice.ice.server_reflexive_candidate(protocol, self.stun_server), timeout)
                candidates.append(cand)
            except (TimeoutError, OSError, aioice.stun.TransactionFailed):
                pass
    candidates += await _orig_get_component_candidates(self, component, [], timeout)
    return candidates


# -- codecs --------------------------------------------------------------------------------------
def to_i420(frame: av.VideoFrame) -> av.VideoFrame:
    """An RGB frame as yuv420p (BT.601, limited range) through OpenCV: 0.2 ms at 512x512 where
    FFmpeg's swscale takes 1.4 ms (chroma differs by < 0.3 levels on average)."""
    if frame.format.name == "yuv420p":
        return frame
    if frame.format.name != "rgb24" or frame.width % 2 or frame.height % 2:
        return frame.reformat(format="yuv420p")
    plane = frame.planes[0]
    rows = np.frombuffer(memoryview(plane), np.uint8).reshape(frame.height, plane.line_size)
    rgb = rows[:, :frame.width * 3].reshape(frame.height, frame.width, 3)   # a view, no copy
    i420 = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420)
    out = av.VideoFrame.from_numpy_buffer(i420.astype(np.uint8, copy=False), format="yuv420p")
    out.pts = frame.pts
    if frame.time_base is not None:
        out.time_base = frame.time_base
    return out


class BucketedVp8Encoder(Vp8Encoder):
    """aiortc's VP8 encoder with a coarse, capped, hysteretic bitrate target, cheaper per frame.

    aiortc re-creates the libvpx context (forcing a keyframe) when the target moves by more
    than 10 %; REMB estimates wander constantly, so we only switch between a few buckets.
    `encode` is aiortc's, except: RGB → yuv420p through OpenCV (`to_i420`), libvpx's temporal
    denoiser off (`noise-sensitivity` 0; aiortc uses 4, meant for camera noise, which rendered
    frames do not have: −0.4 ms of 2.0 ms per 512x512 frame) and `VP8_CPU_USED`.
    """

    def __init__(self) -> None:
        super().__init__()
        self._bucket = VP8_BUCKETS[2]
        self._cap = VP8_BUCKETS[4]
        self._last_switch = 0.0
        Vp8Encoder.target_bitrate.fset(self, self._bucket)  # type: ignore[attr-defined]

    @property  # type: ignore[override]
    def target_bitrate(self) -> int:
        return self._bucket

    @target_bitrate.setter
    def target_bitrate(self, bitrate: int) -> None:
        now = time.monotonic()
        fits = [b for b in VP8_BUCKETS if b <= min(bitrate, self._cap)] or [VP8_BUCKETS[0]]
        want = fits[-1]
        if want > self._bucket and now - self._last_switch < VP8_MIN_SWITCH_S:
            return
        if want < self._bucket and bitrate >= VP8_DOWN_RATIO * self._bucket:
            return
        if want != self._bucket:
            self._bucket, self._last_switch = want, now
            Vp8Encoder.target_bitrate.fset(self, want)  # type: ignore[attr-defined]

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert isinstance(frame, av.VideoFrame)
        area_cap = VP8_BITS_PER_PIXEL_CAP * frame.width * frame.height
        cap = max(b for b in VP8_BUCKETS if b <= max(area_cap, VP8_BUCKETS[0]))
        if cap != self._cap:
            self._cap = cap
            if self._bucket > cap:
                self._bucket = cap
                Vp8Encoder.target_bitrate.fset(self, cap)  # type: ignore[attr-defined]
        frame = to_i420(frame)
        codec = self.codec
        if codec is not None and (frame.width != codec.width or frame.height != codec.height
                                  or codec.bit_rate != self._bucket):
            codec = None
        if force_keyframe:
            frame.pict_type = av.video.frame.PictureType.I
        if codec is None:
            codec = self.codec = self._open(frame.width, frame.height, self._bucket)
        data = b"".join(bytes(p) for p in codec.encode(frame))
        payloads = self._packetize(data, self.picture_id)
        timestamp = (convert_timebase(frame.pts, frame.time_base, VIDEO_TIME_BASE)
                     if frame.pts is not None and frame.time_base is not None else 0)
        self.picture_id = (self.picture_id + 1) % (1 << 15)
        return payloads, timestamp

    @staticmethod
    def _open(width: int, height: int, bitrate: int) -> VideoCodecContext:
        codec = av.CodecContext.create("libvpx", "w")
        assert isinstance(codec, VideoCodecContext)
        codec.width, codec.height = width, height
        codec.bit_rate = bitrate
        codec.pix_fmt = "yuv420p"
        codec.gop_size = 3000
        codec.qmin, codec.qmax = 2, 56
        codec.options = {   # aiortc 1.16's settings (CBR, realtime) except denoiser and speed
            "bufsize": str(bitrate), "cpu-used": VP8_CPU_USED, "deadline": "realtime",
            "lag-in-frames": "0", "minrate": str(bitrate), "maxrate": str(bitrate),
            "noise-sensitivity": "0", "overshoot-pct": "15", "partitions": "0",
            "static-thresh": "1", "undershoot-pct": "100",
        }
        codec.thread_count = number_of_threads(width * height, multiprocessing.cpu_count())
        return codec


class CounterOpusEncoder(OpusEncoder):
    """Opus whose RTP timestamps come from the frame's pts (our sample counter).

    20 ms mono/stereo s16 frames at an Opus-native rate are encoded directly (no resampler,
    no FIFO); anything else goes through aiortc's original path.
    """

    _DIRECT_RATES = (8000, 12000, 16000, 24000, 48000)

    def __init__(self) -> None:
        super().__init__()
        self._direct: av.AudioCodecContext | None = None
        self._direct_key: tuple[int, str] | None = None

    def encode(self, frame: av.frame.Frame, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        assert isinstance(frame, av.AudioFrame)
        rate = frame.sample_rate
        if (frame.pts is None or rate not in self._DIRECT_RATES or frame.samples != rate // 50
                or frame.format.name != "s16"):
            return super().encode(frame, force_keyframe)
        key = (rate, frame.layout.name)
        if self._direct is None or self._direct_key != key:
            codec = av.CodecContext.create("libopus", "w")
            assert isinstance(codec, av.AudioCodecContext)
            codec.bit_rate = OPUS_BITRATE
            codec.format = "s16"
            codec.layout = frame.layout.name
            codec.sample_rate = rate
            codec.time_base = fractions.Fraction(1, rate)
            codec.options = {"application": "voip", "frame_duration": "20"}
            self._direct, self._direct_key = codec, key
        pts = frame.pts
        packets = self._direct.encode(frame)
        if not packets:
            return [], None  # type: ignore[return-value]
        scale = OPUS_RTP_RATE // rate
        return [bytes(p) for p in packets], (pts * scale) & 0xFFFFFFFF


def _get_encoder(codec: RTCRtpCodecParameters) -> Any:
    mime = codec.mimeType.lower()
    if mime == "video/vp8":
        return BucketedVp8Encoder()
    if mime == "audio/opus":
        return CounterOpusEncoder()
    return _aiortc_get_encoder(codec)


# -- RTCP sender reports from the media clock -----------------------------------------------------
# aiortc's SR pairs the RTP timestamp of the last packet sent with the time it was sent. Our
# pictures leave 20-40 ms after the matching audio (render + VP8 encode in threads), and the two
# encoders finish at unrelated moments, so send-time SRs misalign the streams at the receiver by
# that much. A sender whose track has `media_clock(now) -> seconds | None` reports instead
# "at NTP now, the RTP clock reads origin + media_clock(now) × clock rate": the capture-time
# mapping a normal sender uses. The RTP origin is random per sender (aiortc's `_run_rtp`);
# we recover it when the sender comes back for the next frame, as the last packet's timestamp
# minus the encoder's timestamp for the frame it just finished sending.
_orig_next_encoded_frame = rtcrtpsender.RTCRtpSender._next_encoded_frame
_orig_send_rtcp = rtcrtpsender.RTCRtpSender._send_rtcp


async def _next_encoded_frame(self: rtcrtpsender.RTCRtpSender,
                              codec: RTCRtpCodecParameters) -> Any:
    last = getattr(self, "_fc_last_ts", None)
    if last is not None:   # every packet of the frame returned last time has been sent
        sent = self._RTCRtpSender__rtp_timestamp  # type: ignore[attr-defined]
        self._fc_origin = (sent - last) & 0xFFFFFFFF  # type: ignore[attr-defined]
    self._fc_rate = codec.clockRate  # type: ignore[attr-defined]
    enc = await _orig_next_encoded_frame(self, codec)
    if enc is not None:
        self._fc_last_ts = enc.timestamp  # type: ignore[attr-defined]
    return enc


def media_clock_sr(sender: rtcrtpsender.RTCRtpSender, now_mono: float,
                   now_ntp: int) -> tuple[int, int] | None:
    """(NTP, RTP) for `sender`'s next sender report from its track's media clock, or None."""
    origin = getattr(sender, "_fc_origin", None)
    clock_fn = getattr(sender.track, "media_clock", None)
    if origin is None or clock_fn is None:
        return None
    media = clock_fn(now_mono)
    if media is None:
        return None
    return now_ntp, (origin + round(media * sender._fc_rate)) & 0xFFFFFFFF  # type: ignore[attr-defined]


async def _send_rtcp(self: rtcrtpsender.RTCRtpSender, packets: list[Any]) -> None:
    stamp = None
    for packet in packets:
        if isinstance(packet, RtcpSrPacket) and packet.ssrc == self._ssrc:
            stamp = stamp or media_clock_sr(self, time.monotonic(), rtp_clock.current_ntp_time())
            if stamp is not None:
                packet.sender_info.ntp_timestamp, packet.sender_info.rtp_timestamp = stamp
                # receiver reports echo the SR's middle NTP bits; aiortc matches them for RTT
                self._RTCRtpSender__lsr = (stamp[0] >> 16) & 0xFFFFFFFF  # type: ignore[attr-defined]
    await _orig_send_rtcp(self, packets)


# -- inline audio decoding -----------------------------------------------------------------------
# aiortc decodes every received frame in a per-receiver thread: the loop puts each 20 ms mic packet
# on a `queue.Queue` (a thread wake-up), the thread decodes it (~0.05 ms of Opus) and hands the
# frame back with `run_coroutine_threadsafe` (a second wake-up, through the loop's self-pipe).
# Under load those hand-offs cost more GIL time than the decode (py-spy: ~12 % of the server's
# GIL samples at 4 sessions). Audio receivers decode on the loop instead; video keeps the thread.
class _InlineAudioDecoding:
    """Stands in for an audio receiver's decoder queue: `put` decodes at once, on the loop."""

    def __init__(self, receiver: rtcrtpreceiver.RTCRtpReceiver) -> None:
        self._receiver = receiver
        self._decoder: Any = None
        self._codec_name: str | None = None
        self._stopped = threading.Event()

    def put(self, task: Any) -> None:
        if task is None:             # receiver stop: the idle worker thread ends the track
            self._stopped.set()
            return
        codec, encoded_frame = task
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = rtcrtpreceiver.get_decoder(codec), codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError as exc:
            log.debug("audio frame failed to decode: %s", exc)
            return
        track_queue = self._receiver._track._queue  # type: ignore[union-attr]
        for frame in frames:
            track_queue.put_nowait(frame)

    def get(self) -> None:
        """aiortc's worker thread waits here, idle, until the receiver stops."""
        self._stopped.wait()
        return None


_orig_receiver_init = rtcrtpreceiver.RTCRtpReceiver.__init__


def _receiver_init(self: rtcrtpreceiver.RTCRtpReceiver, kind: str, transport: Any) -> None:
    _orig_receiver_init(self, kind, transport)
    if kind == "audio":
        self._RTCRtpReceiver__decoder_queue = _InlineAudioDecoding(self)  # type: ignore[attr-defined]


# -- jitter buffer -------------------------------------------------------------------------------
# aiortc's jitter buffer closes a frame only when a packet with the next timestamp arrives, so
# with any prefetch every 20 ms audio packet waits for its successor (+20 ms on the mic path).
# An audio packet is a whole Opus frame: hand it out at once, in sequence order (a packet older
# than one already handed out is dropped; a lost one is simply skipped, as aiortc does).
class _LowLatencyJitterBuffer(JitterBuffer):
    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False) -> None:
        if not is_video and prefetch > AUDIO_PREFETCH:
            prefetch = AUDIO_PREFETCH
        super().__init__(capacity, prefetch=prefetch, is_video=is_video)
        self._next_seq: int | None = None

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        if self._is_video or not AUDIO_IMMEDIATE:
            return super().add(packet)
        if self._next_seq is not None and ((packet.sequence_number - self._next_seq) & 0xFFFF) >= 0x8000:
            return False, None                       # late or duplicate
        self._next_seq = (packet.sequence_number + 1) & 0xFFFF
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


_installed = False


def install() -> None:
    """Apply every patch (idempotent). Call before the first RTCPeerConnection is created."""
    global _installed
    if _installed:
        return
    _installed = True
    rtcrtpreceiver.JitterBuffer = _LowLatencyJitterBuffer  # type: ignore[misc]
    rtcsctptransport.USERDATA_MAX_LENGTH = SCTP_USERDATA_MAX_LENGTH
    rtcrtpsender.get_encoder = _get_encoder  # type: ignore[assignment]
    rtcrtpsender.RTCRtpSender._next_encoded_frame = _next_encoded_frame  # type: ignore[method-assign]
    rtcrtpsender.RTCRtpSender._send_rtcp = _send_rtcp  # type: ignore[method-assign]
    rtcrtpreceiver.RTCRtpReceiver.__init__ = _receiver_init  # type: ignore[method-assign]
    aioice.ice.get_host_addresses = _get_host_addresses
    aioice.ice.Connection.get_component_candidates = _get_component_candidates  # type: ignore[method-assign]
    log.debug("aiortc patches installed")
