"""The `facecast` command as a user runs it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import av
import pytest


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "facecast.cli", *args], cwd=cwd, text=True,
                          capture_output=True, timeout=120, env={**os.environ, **(env or {})})


def test_keys_create_prints_a_key_once_and_stores_only_its_hash(tmp_path: Path) -> None:
    r = run_cli("keys", "create", "--name", "ci", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("fc_") and len(key) > 30
    assert "cannot show it again" in r.stderr
    db = (tmp_path / "facecast.db").read_bytes()
    assert key.encode() not in db


def test_bad_configuration_names_the_variable(tmp_path: Path) -> None:
    r = run_cli("keys", "create", cwd=tmp_path, env={"FACECAST_PORT": "not-a-port"})
    assert r.returncode != 0 and "FACECAST_PORT" in r.stderr


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_render_writes_an_mp4_matching_the_audio(tmp_path: Path) -> None:
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Hello from the command line."], check=True)
    out = tmp_path / "talk.mp4"
    r = run_cli("render", "--audio", str(wav), "--out", str(out), "--render-model", "small", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    with av.open(str(wav)) as f:
        audio_s = f.duration / 1e6
    with av.open(str(out)) as f:
        v = f.streams.video[0]
        a = f.streams.audio[0]
        assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
        assert (v.width, v.height) == (256, 256)
        frames = sum(1 for _ in f.decode(video=0))
    assert abs(frames / 25 - audio_s) <= 0.04 + 1e-6
    r = run_cli("render", "--avatar", "nope", "--audio", str(wav), "--out", str(out), cwd=tmp_path)
    assert r.returncode != 0 and "neither an avatar id nor an image" in r.stderr


def test_cartesia_token_posts_the_documented_request(tmp_path: Path) -> None:
    """`facecast cartesia token` against a local HTTP server standing in for Cartesia's REST API."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[tuple[str, dict[str, str], dict[str, object]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, dict(self.headers), body))
            payload = json.dumps({"token": "jwt-for-the-agent"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"FACECAST_CARTESIA_API_URL": f"http://127.0.0.1:{server.server_port}",
               "CARTESIA_API_KEY": "sk_car_test_key"}
        r = run_cli("cartesia", "token", "--expires-in", "120", cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "jwt-for-the-agent"
        path, headers, body = seen[0]
        assert path == "/access-token"
        assert headers["Authorization"] == "Bearer sk_car_test_key"
        assert headers["Cartesia-Version"]
        assert body == {"grants": {"agent": True}, "expires_in": 120}
        r = run_cli("cartesia", "token", "--expires-in", "99999", cwd=tmp_path, env=env)
        assert r.returncode == 2 and "expires_in" in r.stderr and "Traceback" not in r.stderr
        assert "sk_car_test_key" not in r.stderr + r.stdout
        r = run_cli("cartesia", "token", cwd=tmp_path, env={**env, "CARTESIA_API_KEY": ""})
        assert r.returncode == 2 and "CARTESIA_API_KEY" in r.stderr
    finally:
        server.shutdown()
