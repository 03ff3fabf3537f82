"""Outbound engine WebSockets that never follow HTTP redirects.

websockets' `connect` follows 3xx answers by default and, on a redirect to another origin,
strips only `Authorization`, `Cookie` and `Proxy-Authorization`: a credential carried in any
other header (Cartesia's `X-API-Key`, an external engine's own headers) would reach whatever
host the redirect names. Engine endpoints are configured exactly, so a redirect is answered
like any other refused upgrade (`InvalidStatus` with the 3xx response).
"""

from __future__ import annotations

import asyncio
import logging

from websockets.asyncio.client import ClientConnection, connect


class connect_no_redirects(connect):  # noqa: N801 - used like the function it wraps
    """`websockets.asyncio.client.connect`, except a redirect is an error, never followed."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


async def close_bounded(ws: ClientConnection, code: int, reason: str, timeout: float,
                        log: logging.Logger | logging.LoggerAdapter[logging.Logger]) -> None:
    """Close with `code`/`reason`, dropping the connection if that takes over `timeout` s:
    websockets' `close()` waits without limit for a send buffer a frozen peer never drains."""
    try:
        async with asyncio.timeout(timeout):
            await ws.close(code, reason)
    except TimeoutError:
        log.warning("the engine did not take our close frame within %g s: connection dropped",
                    timeout)
        ws.transport.abort()
    except Exception as exc:  # closing a dead socket: nothing left to do
        log.debug("close: %r", exc)
