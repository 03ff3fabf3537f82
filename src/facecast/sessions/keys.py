"""API keys: shown once at creation, stored only as a SHA-256 hash."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from sqlalchemy import select

from facecast.sessions.db import ApiKeyRow, Database

KEY_PREFIX = "fc_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def create_api_key(db: Database, name: str, now: datetime) -> tuple[str, ApiKeyRow]:
    """Create a key; returns (the key itself — never stored —, its row)."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKeyRow(id="key_" + secrets.token_hex(8), name=name, key_hash=hash_key(key),
                    prefix=key[:10], created_at=now)
    async with db.session() as s, s.begin():
        s.add(row)
    return key, row


async def find_api_key(db: Database, key: str) -> ApiKeyRow | None:
    if not key or len(key) > 200:
        return None
    async with db.session() as s:
        row = (await s.execute(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(key)))).scalar_one_or_none()
    if row is None or row.revoked_at is not None:
        return None
    return row
