"""A redirect from an engine endpoint is refused, and the credential never reaches its target."""

from __future__ import annotations

from http import HTTPStatus

import pytest
from websockets.asyncio.server import serve
from websockets.datastructures import Headers
from websockets.exceptions import InvalidStatus

from facecast.engines.wsconnect import connect_no_redirects


async def test_a_redirect_is_not_followed() -> None:
    seen: list[Headers] = []

    def target_request(connection, request):  # type: ignore[no-untyped-def]
        seen.append(request.headers)

    async def echo(ws) -> None:  # type: ignore[no-untyped-def]
        await ws.close()

    async with serve(echo, "127.0.0.1", 0, process_request=target_request) as target:
        port = next(iter(target.sockets)).getsockname()[1]

        def redirect(connection, request):  # type: ignore[no-untyped-def]
            response = connection.respond(HTTPStatus.FOUND, "moved\n")
            response.headers["Location"] = f"ws://127.0.0.1:{port}/elsewhere"
            return response

        async with serve(echo, "127.0.0.1", 0, process_request=redirect) as origin:
            oport = next(iter(origin.sockets)).getsockname()[1]
            with pytest.raises(InvalidStatus) as info:
                await connect_no_redirects(f"ws://127.0.0.1:{oport}/agent",
                                           additional_headers={"X-API-Key": "sk_secret"})
            assert info.value.response.status_code == 302
    assert seen == []   # the redirect's target was never contacted
