"""Real-browser harness: a private network namespace, the server in it, Chromium in it.

- `netns`: namespace `fce2e<pid>` with a veth pair on its own /30 of 198.51.100.0/24: .1
  inside (server, browser), .2 in the root namespace (this test process, the stand-in Cartesia
  agent) for the first run; a run beside it (another test run, `bench/e2e.py`) takes the next
  free /30 (.5/.6, ...). Nothing is routed anywhere else. Skips cleanly without root/`ip netns`/
  chromium/playwright.
- `e2e_server`: `tests/e2e/serve.py` inside the namespace (the real app with the real renderer:
  the built-in avatar at 512×512).
- `agent`: the stand-in Cartesia agent (persona off: tests script it) on 198.51.100.2.
- `browser`: Debian chromium through Playwright, launched via `ip netns exec`, with a fake mic
  playing `fake_mic.wav` (speech bursts, 5 s cycle) and `probe.js` in every page.

`FACECAST_E2E_DOC_IMAGES=docs/img pytest tests/e2e` also writes the screenshots used in
docs/sdk.md (`sdk-demo.png`, `sdk-transparent.png`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import wave
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
CHROMIUM = "/usr/bin/chromium"
NET_PREFIX = "198.51.100."          # TEST-NET-2 (RFC 5737), split into /30 blocks per run
NET_LOCK = Path("/run/lock/facecast-e2e-netns.lock")
MIC_RATE = 48_000
MIC_CYCLE_S = 5.0
MIC_SPEECH_AT_S = 1.0
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True)


@dataclass
class Netns:
    name: str
    inside: str
    outside: str

    def wrap(self, *cmd: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *cmd]


def _free_block() -> int:
    """The first /30 block of NET_PREFIX with no address in the root namespace."""
    out = subprocess.run(["ip", "-o", "-4", "addr", "show"], check=True, capture_output=True,
                         text=True).stdout
    used = {int(a) // 4 for a in re.findall(re.escape(NET_PREFIX) + r"(\d+)/", out)}
    for block in range(64):
        if block not in used:
            return block
    raise RuntimeError(f"no free /30 block left in {NET_PREFIX}0/24")


@contextlib.contextmanager
def private_netns() -> Iterator[Netns]:
    """Namespace + veth pair (see the module docstring); removed on exit.

    Runs side by side (two pytest runs, a test run and `bench/e2e.py`) each get their own /30:
    the same address on two veths would route one run's requests into the other's server."""
    name = f"fce2e{os.getpid()}"
    v_in, v_out = f"fcin{os.getpid() % 100000}", f"fcout{os.getpid() % 100000}"
    _run("ip", "netns", "add", name)
    try:
        _run("ip", "netns", "exec", name, "ip", "link", "set", "lo", "up")
        _run("ip", "link", "add", v_out, "type", "veth", "peer", "name", v_in)
        _run("ip", "link", "set", v_in, "netns", name)
        NET_LOCK.parent.mkdir(parents=True, exist_ok=True)
        with NET_LOCK.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)     # pick and claim a block atomically
            block = _free_block()
            inside, outside = f"{NET_PREFIX}{4 * block + 1}", f"{NET_PREFIX}{4 * block + 2}"
            _run("ip", "addr", "add", f"{outside}/30", "dev", v_out)
        _run("ip", "netns", "exec", name, "ip", "addr", "add", f"{inside}/30", "dev", v_in)
        _run("ip", "netns", "exec", name, "ip", "link", "set", v_in, "up")
        _run("ip", "link", "set", v_out, "up")
        yield Netns(name, inside, outside)
    finally:
        subprocess.run(["ip", "link", "del", v_out], capture_output=True)
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def browser_unavailable() -> str | None:
    """Why real-browser tests cannot run here, or None."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        return "browser tests need root and iproute2 (ip netns)"
    if not Path(CHROMIUM).exists():
        return "chromium is not installed"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True)
    if probe.returncode != 0:
        return "ip netns unavailable"
    return None


@pytest.fixture(scope="session")
def netns() -> Iterator[Netns]:
    reason = browser_unavailable()
    if reason:
        pytest.skip(reason)
    try:
        ctx = private_netns()
        ns = ctx.__enter__()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"ip netns unavailable: {exc.stderr.decode().strip()}")
    try:
        yield ns
    finally:
        ctx.__exit__(None, None, None)


def make_mic_wav(path: Path) -> np.ndarray:
    """Speech bursts: 1 s silence, ~2 s of speech, silence to 5 s; returns the samples."""
    from facecast.media import tts

    speech = tts.synthesize("Hello there, can you hear me? I am talking to you.",
                            sample_rate=MIC_RATE)[: int(2.2 * MIC_RATE)]
    out = np.zeros(int(MIC_CYCLE_S * MIC_RATE), np.int16)
    at = int(MIC_SPEECH_AT_S * MIC_RATE)
    out[at:at + speech.size] = speech
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(MIC_RATE)
        w.writeframes(out.tobytes())
    return out


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="facecast-e2e-") as d:
        yield Path(d)


@pytest.fixture(scope="session")
def mic_wav(workdir: Path) -> tuple[Path, np.ndarray]:
    path = workdir / "fake_mic.wav"
    return path, make_mic_wav(path)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def agent(netns: Netns) -> AsyncIterator[object]:
    from facecast.testing.cartesia_agent import CartesiaStandIn

    async with CartesiaStandIn(host=netns.outside, port=0, persona=None) as standin:
        yield standin


@dataclass
class E2EServer:
    base_url: str
    api_key: str
    proc: subprocess.Popen[str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def start_server(netns: Netns, agent_url: str, data_dir: Path, *, renderer: str = "pattern",
                 port: int = 8000, extra: list[str] | None = None) -> E2EServer:
    cmd = netns.wrap(sys.executable, str(HERE / "serve.py"), "--host", netns.inside,
                     "--port", str(port), "--cartesia-url", agent_url, "--renderer", renderer,
                     "--data-dir", str(data_dir), *(extra or []))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait(5)
        raise RuntimeError(f"server failed to start (rc={proc.returncode})")
    info = json.loads(line)
    return E2EServer(info["base_url"], info["api_key"], proc)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def e2e_server(netns: Netns, agent: object, workdir: Path) -> AsyncIterator[E2EServer]:
    srv = await asyncio.to_thread(start_server, netns, agent.url, workdir / "data",  # type: ignore[attr-defined]
                                  renderer="real")
    try:
        yield srv
    finally:
        srv.proc.terminate()
        try:
            srv.proc.wait(10)
        except subprocess.TimeoutExpired:
            srv.proc.kill()


def chromium_wrapper(netns: Netns, workdir: Path) -> Path:
    path = workdir / "chromium-in-netns"
    path.write_text(f"#!/bin/sh\nexec ip netns exec {netns.name} {CHROMIUM} \"$@\"\n")
    path.chmod(0o755)
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(netns: Netns, workdir: Path, mic_wav: tuple[Path, np.ndarray]) -> AsyncIterator[object]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=str(chromium_wrapper(netns, workdir)), headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={mic_wav[0]}",
                  # getUserMedia needs a secure context; the namespace address is plain http
                  f"--unsafely-treat-insecure-origin-as-secure=http://{netns.inside}:8000"])
        try:
            yield b
        finally:
            await b.close()


@pytest_asyncio.fixture(loop_scope="session")
async def new_page(browser: object) -> AsyncIterator[object]:
    contexts = []

    async def make() -> object:
        ctx = await browser.new_context()  # type: ignore[attr-defined]
        contexts.append(ctx)
        page = await ctx.new_page()
        await page.add_init_script(path=str(HERE / "probe.js"))
        page.on("console", lambda m: m.type == "error" and print("page:", m.text))
        page.on("pageerror", lambda e: print("page error:", e))
        return page

    yield make
    for ctx in contexts:
        await ctx.close()
