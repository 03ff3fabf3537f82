"""`facecast.cartesia.mint_access_token` against a real local HTTP server."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from facecast.cartesia import (
    CartesiaAPIError,
    mint_access_token,
    mint_access_token_async,
    token_cli,
)

API_KEY = "sk_car_TESTKEY_0123456789abcdef"


@dataclass
class FakeCartesiaREST:
    url: str = ""
    status: int = 200
    body: bytes = b'{"token": "jwt.abc.def"}'
    requests: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def rest() -> Iterator[FakeCartesiaREST]:
    state = FakeCartesiaREST()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            state.requests.append({"path": self.path, "headers": dict(self.headers),
                                   "json": json.loads(self.rfile.read(length) or b"null")})
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), name="fake-cartesia-rest", daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_mint_sends_the_documented_request(rest: FakeCartesiaREST) -> None:
    token = mint_access_token(API_KEY, 120, base_url=rest.url + "/")
    assert token == "jwt.abc.def"
    [req] = rest.requests
    assert req["path"] == "/access-token"
    assert req["headers"]["Authorization"] == f"Bearer {API_KEY}"
    assert req["headers"]["Cartesia-Version"] == "2025-04-16"
    assert req["headers"]["Content-Type"] == "application/json"
    assert req["json"] == {"grants": {"agent": True}, "expires_in": 120}


async def test_mint_async(rest: FakeCartesiaREST) -> None:
    assert await mint_access_token_async(API_KEY, base_url=rest.url) == "jwt.abc.def"
    assert rest.requests[0]["json"]["expires_in"] == 300


@pytest.mark.parametrize("expires_in", [0, -5, 3601, True, 1.5])
def test_expires_in_is_validated(rest: FakeCartesiaREST, expires_in: Any) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        mint_access_token(API_KEY, expires_in, base_url=rest.url)
    assert rest.requests == []


def test_refused_key_is_a_clear_error_without_the_key(rest: FakeCartesiaREST) -> None:
    rest.status = 401
    rest.body = json.dumps({"error": f"invalid api key {API_KEY}"}).encode()
    with pytest.raises(CartesiaAPIError) as info:
        mint_access_token(API_KEY, base_url=rest.url)
    assert "refused the API key (HTTP 401)" in str(info.value)
    assert info.value.status == 401
    assert API_KEY not in str(info.value) and API_KEY not in repr(info.value)


def test_server_error_and_bad_bodies(rest: FakeCartesiaREST) -> None:
    rest.status = 503
    rest.body = b'{"error": "overloaded"}'
    with pytest.raises(CartesiaAPIError, match=r"HTTP 503.*overloaded"):
        mint_access_token(API_KEY, base_url=rest.url)
    rest.status, rest.body = 200, b"not json"
    with pytest.raises(CartesiaAPIError, match="non-JSON"):
        mint_access_token(API_KEY, base_url=rest.url)
    rest.body = b'{"nope": 1}'
    with pytest.raises(CartesiaAPIError, match="no token"):
        mint_access_token(API_KEY, base_url=rest.url)


def test_unreachable() -> None:
    with pytest.raises(CartesiaAPIError, match="cannot reach Cartesia") as info:
        mint_access_token(API_KEY, base_url="http://127.0.0.1:9", timeout=2)
    assert API_KEY not in str(info.value)


def test_token_cli(rest: FakeCartesiaREST) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert token_cli(["--expires-in", "60", "--api-url", rest.url], env_api_key=API_KEY,
                     out=out, err=err) == 0
    assert out.getvalue() == "jwt.abc.def\n"
    assert rest.requests[0]["json"]["expires_in"] == 60
    assert token_cli([], base_url=rest.url, out=out, err=err) == 2
    assert "CARTESIA_API_KEY" in err.getvalue()
    rest.status = 403
    err = io.StringIO()
    assert token_cli(["--api-key", API_KEY], base_url=rest.url, out=io.StringIO(), err=err) == 1
    assert "refused" in err.getvalue() and API_KEY not in err.getvalue()
