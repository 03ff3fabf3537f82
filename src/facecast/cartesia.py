"""Minting Cartesia access tokens for Line agents (what a product backend does first).

`POST {base}/access-token` with the Cartesia API key returns a short-lived token that lets a
client talk to agents (`grants.agent`). A session with `api: "line"` takes that token as its
`access_token`, and the engine sends it as `Authorization: Bearer <token>`, so the API key stays
in the backend.

Managed Agents (`api: "agents"`) do not use this token: their `access_token` is a session token
the backend gets from `POST /v1/agents/websocket/{agent_id}/sessions` (sent by the engine as the
`access_token` query parameter) or a server API key `sk_car_...` (sent as `X-API-Key`); see
`facecast.engines.cartesia_wire.build_target`. Nothing here mints Managed session tokens.

The `facecast cartesia token --api-key KEY [--expires-in N]` command is `token_cli`; the CLI
passes `CARTESIA_API_KEY` from its own environment as `env_api_key` (code outside the CLI and
settings never reads `os.environ`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import httpx

from facecast.errors import FacecastError

DEFAULT_API_URL = "https://api.cartesia.ai"
API_VERSION = "2025-04-16"
MAX_EXPIRES_IN = 3600
TIMEOUT_S = 15.0


class CartesiaAPIError(FacecastError):
    """Cartesia's REST API refused or failed a request. `status` is the HTTP status, if any."""

    code = "cartesia_api_error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _request(api_key: str, expires_in: int, base_url: str | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    if not isinstance(api_key, str) or not api_key.strip():
        raise ValueError("a Cartesia API key is required")
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) \
            or not 1 <= expires_in <= MAX_EXPIRES_IN:
        raise ValueError(f"expires_in must be an integer between 1 and {MAX_EXPIRES_IN} seconds")
    url = (base_url or DEFAULT_API_URL).rstrip("/") + "/access-token"
    headers = {"Authorization": f"Bearer {api_key.strip()}", "Cartesia-Version": API_VERSION}
    body = {"grants": {"agent": True}, "expires_in": expires_in}
    return url, headers, body


def _token_from(response: httpx.Response, api_key: str) -> str:
    status = response.status_code
    if status != 200:
        detail = response.text[:300].replace(api_key.strip(), "***").strip()
        detail = f": {detail}" if detail else ""
        if status in (401, 403):
            raise CartesiaAPIError(f"Cartesia refused the API key (HTTP {status}){detail}",
                                   status=status)
        raise CartesiaAPIError(f"Cartesia access-token request failed (HTTP {status}){detail}",
                               status=status)
    try:
        data = response.json()
    except ValueError:
        raise CartesiaAPIError("Cartesia returned a non-JSON access-token response",
                               status=status) from None
    token = data.get("token") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise CartesiaAPIError("Cartesia's access-token response has no token", status=status)
    return token


def _transport_error(exc: httpx.HTTPError, url: str) -> CartesiaAPIError:
    # httpx messages name the URL, never the headers: the key cannot leak through them
    return CartesiaAPIError(f"cannot reach Cartesia at {url}: {type(exc).__name__}: {exc}")


def mint_access_token(api_key: str, expires_in: int = 300, *, base_url: str | None = None,
                      timeout: float = TIMEOUT_S) -> str:
    """A Cartesia access token with the agent grant, valid `expires_in` (1..3600) seconds."""
    url, headers, body = _request(api_key, expires_in, base_url)
    try:
        with httpx.Client(timeout=timeout) as client:
            response = client.post(url, headers=headers, json=body)
    except httpx.HTTPError as exc:
        raise _transport_error(exc, url) from None
    return _token_from(response, api_key)


async def mint_access_token_async(api_key: str, expires_in: int = 300, *,
                                  base_url: str | None = None, timeout: float = TIMEOUT_S) -> str:
    """`mint_access_token` for async code."""
    url, headers, body = _request(api_key, expires_in, base_url)
    try:
        async with httpx.AsyncClient(timeout=timeout) as client:
            response = await client.post(url, headers=headers, json=body)
    except httpx.HTTPError as exc:
        raise _transport_error(exc, url) from None
    return _token_from(response, api_key)


def token_cli(argv: Sequence[str], *, env_api_key: str | None = None,
              base_url: str | None = None, out: TextIO | None = None,
              err: TextIO | None = None) -> int:
    """`facecast cartesia token [--api-key KEY] [--expires-in N] [--api-url URL]`.

    Prints the token alone on stdout (so `$(facecast cartesia token)` works). The key comes
    from `--api-key` or else `env_api_key` (the CLI's `CARTESIA_API_KEY`). Returns an exit code.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    parser = argparse.ArgumentParser(prog="facecast cartesia token",
                                     description="Mint a Cartesia access token for an agent.")
    parser.add_argument("--api-key", help="Cartesia API key (default: $CARTESIA_API_KEY)")
    parser.add_argument("--expires-in", type=int, default=300,
                        help=f"token lifetime in seconds, 1..{MAX_EXPIRES_IN} (default 300)")
    parser.add_argument("--api-url", default=base_url, help="Cartesia REST base URL")
    args = parser.parse_args(list(argv))
    key = args.api_key or env_api_key
    if not key:
        print("error: no API key: pass --api-key or set CARTESIA_API_KEY", file=err)
        return 2
    try:
        token = mint_access_token(key, args.expires_in, base_url=args.api_url)
    except ValueError as exc:
        print(f"error: {exc}", file=err)
        return 2
    except CartesiaAPIError as exc:
        print(f"error: {exc.message}", file=err)
        return 1
    print(token, file=out)
    return 0
