"""Session tokens: signed (HS256 JWT), bound to one session id, expiring.

A token may be used to *join* until it expires (`token_ttl`, default 10 minutes). Rejoining after
a network drop or a page reload is accepted past expiry while the session is still live and has
already been joined once (the manager checks that). The audience claim keeps tokens out of
`/api/v1`, which only accepts API keys anyway.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import jwt

from facecast.errors import Unauthorized

AUDIENCE = "facecast-sdk"


@dataclass(frozen=True)
class TokenClaims:
    session_id: str
    expired: bool


class TokenSigner:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        self._secret = secret
        self.ttl = ttl_seconds

    def issue(self, session_id: str, now: datetime) -> str:
        claims = {"sid": session_id, "aud": AUDIENCE, "iat": int(now.timestamp()),
                  "exp": int((now + timedelta(seconds=self.ttl)).timestamp()),
                  "jti": secrets.token_hex(6)}
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str, now: datetime) -> TokenClaims:
        """Check signature and audience; report expiry instead of failing on it."""
        if not token or len(token) > 4096:
            raise Unauthorized("missing session token", code="invalid_token")
        try:
            claims = jwt.decode(token, self._secret, algorithms=["HS256"], audience=AUDIENCE,
                                options={"verify_exp": False, "require": ["sid", "exp", "aud"]})
        except jwt.PyJWTError:
            raise Unauthorized("invalid session token", code="invalid_token") from None
        sid = claims.get("sid")
        if not isinstance(sid, str):
            raise Unauthorized("invalid session token", code="invalid_token")
        return TokenClaims(session_id=sid, expired=now.timestamp() >= float(claims["exp"]))


def load_or_create_secret(data_dir: Path) -> str:
    """The signing secret lives in `data_dir/secret_key` (created 0600 on first start)."""
    path = data_dir / "secret_key"
    if path.exists():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(secret)
    tmp.chmod(0o600)
    tmp.replace(path)
    return secret
