"""Shared request dependencies: the services container and API-key authentication."""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from facecast.avatars import AvatarLibrary
from facecast.clock import Clock
from facecast.config import Settings
from facecast.errors import Unauthorized
from facecast.sessions.db import ApiKeyRow, Database
from facecast.sessions.keys import find_api_key
from facecast.sessions.manager import SessionManager


@dataclass
class Services:
    settings: Settings
    clock: Clock
    db: Database
    manager: SessionManager
    avatars: AvatarLibrary
    executor: Executor


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


_bearer = HTTPBearer(auto_error=False, description="a facecast API key (`facecast keys create`)")


async def require_api_key(
    services: Annotated[Services, Depends(get_services)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKeyRow:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send 'Authorization: Bearer <key>'",
                           field="Authorization", extra={"loc_root": "header"})
    row = await find_api_key(services.db, credentials.credentials)
    if row is None:
        raise Unauthorized("unknown or revoked API key", field="Authorization",
                           extra={"loc_root": "header"})
    return row


ServicesDep = Annotated[Services, Depends(get_services)]
ApiKeyDep = Annotated[ApiKeyRow, Depends(require_api_key)]
