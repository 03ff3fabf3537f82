"""Outbound engine WebSockets that never follow HTTP redirects.

websockets' `connect` follows 3xx answers by default and, on a redirect to another origin,
strips only `Authorization`, `Cookie` and `Proxy-Authorization`: a credential carried in any
other header (Cartesia's `X-API-Key`, an external engine's own headers) would reach whatever
host the redirect names. Engine endpoints are configured exactly, so a redirect is answered
like any other refused upgrade (`InvalidStatus` with the 3xx response).
"""

from __future__ import annotations

from websockets.asyncio.client import connect


class connect_no_redirects(connect):  # noqa: N801 - used like the function it wraps
    """`websockets.asyncio.client.connect`, except a redirect is an error, never followed."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc
