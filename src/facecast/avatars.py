"""The avatar library: the built-in character plus portraits uploaded through the API.

Rows live in the `avatars` table; assets (cropped portrait, landmarks, matte) in
`data_dir/avatars/<id>/`, written atomically by `facecast.render.save_avatar`. A deleted avatar
keeps its row (with `deleted_at`) so sessions asking for it get 410 instead of 400; its files
are removed. Preparing a portrait (face landmarks, crop, precompute) is CPU work and runs in the
executor, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import shutil
import threading
from collections import OrderedDict
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import select

from facecast.clock import Clock
from facecast.errors import AvatarGone, AvatarNotFound, InvalidRequest
from facecast.render.presets import PRESETS
from facecast.sessions.db import AvatarRow, Database

log = logging.getLogger(__name__)

BUILTIN_ID = "default"
CACHE_SIZE = 32   # loaded avatar assets kept in memory (a few MB each)
BUILTIN_NAME = "Juniper (built-in illustrated character)"


class AvatarLibrary:
    def __init__(self, db: Database, root: Path, clock: Clock, executor: Executor) -> None:
        self.db = db
        self.root = root
        self.clock = clock
        self.executor = executor
        # portrait preparation (landmarks, matte: up to seconds) gets its own single worker, so
        # uploads queue behind each other instead of taking threads from live-session rendering
        self._prepare = ThreadPoolExecutor(max_workers=1, thread_name_prefix="facecast-avatar")
        self._cache: OrderedDict[str, Any] = OrderedDict()   # LRU of loaded assets
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self._prepare.shutdown(wait=True, cancel_futures=True)

    async def init(self) -> None:
        """Make sure the built-in avatar has its row."""
        from facecast.render import builtin_avatar

        self.root.mkdir(parents=True, exist_ok=True)
        size = await asyncio.get_running_loop().run_in_executor(
            self.executor, lambda: int(builtin_avatar().size))
        async with self.db.session() as s, s.begin():
            row = await s.get(AvatarRow, BUILTIN_ID)
            if row is None:
                s.add(AvatarRow(id=BUILTIN_ID, name=BUILTIN_NAME, builtin=True,
                                width=size, height=size, created_at=self.clock.now()))
            else:
                row.width = row.height = size

    async def get_row(self, avatar_id: str) -> AvatarRow:
        async with self.db.session() as s:
            row = await s.get(AvatarRow, avatar_id)
        if row is None:
            raise AvatarNotFound(f"no avatar {avatar_id!r}", field="avatar_id")
        if row.deleted_at is not None:
            raise AvatarGone(f"avatar {avatar_id!r} was deleted", field="avatar_id")
        return row

    async def list_rows(self) -> list[AvatarRow]:
        async with self.db.session() as s:
            q = select(AvatarRow).where(AvatarRow.deleted_at.is_(None)).order_by(AvatarRow.created_at)
            return list((await s.execute(q)).scalars().all())

    async def create(self, image: bytes, name: str, max_bytes: int) -> AvatarRow:
        from facecast.render import AvatarError, prepare_avatar, save_avatar

        avatar_id = "av_" + secrets.token_hex(10)
        directory = self.root / avatar_id
        loop = asyncio.get_running_loop()

        def work() -> tuple[int, int]:
            prepared = prepare_avatar(image, max_bytes=max_bytes)
            save_avatar(prepared, directory)
            return _size_of(prepared)

        try:
            width, height = await loop.run_in_executor(self._prepare, work)
        except AvatarError as exc:
            raise InvalidRequest(exc.message, code=exc.code, field="file") from None
        row = AvatarRow(id=avatar_id, name=name, builtin=False, width=width, height=height,
                        created_at=self.clock.now())
        try:
            async with self.db.session() as s, s.begin():
                s.add(row)
        except BaseException:
            shutil.rmtree(directory, ignore_errors=True)  # nothing half-stored
            raise
        log.info("avatar %s created (%dx%d)", avatar_id, width, height)
        return row

    async def delete(self, avatar_id: str) -> AvatarRow:
        row = await self.get_row(avatar_id)
        if row.builtin:
            raise InvalidRequest("the built-in avatar cannot be deleted", code="avatar_builtin",
                                 field="avatar_id")
        async with self.db.session() as s, s.begin():
            db_row = await s.get(AvatarRow, avatar_id)
            assert db_row is not None
            db_row.deleted_at = self.clock.now()
        with self._cache_lock:
            self._cache.pop(avatar_id, None)
        await asyncio.get_running_loop().run_in_executor(
            self._prepare, lambda: shutil.rmtree(self.root / avatar_id, ignore_errors=True))
        return row

    def load(self, avatar_id: str) -> Any:
        """The render asset (blocking: call from the executor)."""
        if avatar_id == BUILTIN_ID:
            from facecast.render import builtin_avatar

            return builtin_avatar()
        with self._cache_lock:
            asset = self._cache.get(avatar_id)
            if asset is not None:
                self._cache.move_to_end(avatar_id)
        if asset is None:
            from facecast.render import load_avatar

            asset = load_avatar(self.root / avatar_id)
            with self._cache_lock:
                self._cache[avatar_id] = asset
                while len(self._cache) > CACHE_SIZE:
                    self._cache.popitem(last=False)
        return asset

    async def presets_for(self, avatar_id: str) -> list[str]:
        if avatar_id == BUILTIN_ID:
            return preset_names()  # drawn at a resolution that serves every preset
        from facecast.render import avatar_presets

        loop = asyncio.get_running_loop()
        asset = await loop.run_in_executor(self.executor, self.load, avatar_id)
        return list(avatar_presets(asset))


def _size_of(prepared: Any) -> tuple[int, int]:
    size = int(prepared.avatar.size)  # avatars are square portraits
    return size, size


def preset_names() -> list[str]:
    return list(PRESETS)
