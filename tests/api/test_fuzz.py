"""Property-based fuzzing of the whole REST API from its own OpenAPI schema: never a 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from facecast.api.app import create_app
from facecast.clock import SystemClock
from facecast.sessions.db import Database
from facecast.sessions.keys import create_api_key
from tests.conftest import make_settings

# create_app touches nothing on disk until its lifespan runs: this only builds the schema
schema = schemathesis.openapi.from_dict(create_app(make_settings(Path("/nonexistent"))).openapi())


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    app_settings = make_settings(tmp_path_factory.mktemp("fuzz"), max_sessions=5)

    async def new_key() -> str:
        db = Database(app_settings.database_url)
        await db.create_all()
        key, _ = await create_api_key(db, "fuzz", SystemClock().now())
        await db.close()
        return key

    api_key = asyncio.run(new_key())
    with TestClient(create_app(app_settings), raise_server_exceptions=False) as c:
        yield c, api_key


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_server_errors(case: schemathesis.Case, client: tuple[TestClient, str]) -> None:
    c, api_key = client
    kwargs = case.as_transport_kwargs(headers={"Authorization": f"Bearer {api_key}"})
    kwargs.pop("base_url", None)
    response = c.request(**kwargs)
    assert response.status_code < 500, (case.method, case.path, response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert body["code"] and isinstance(body["detail"], list), body
