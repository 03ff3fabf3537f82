"""End to end in a real browser: the SDK rejoins its session after a real network drop.

The browser and the server both run in the test namespace on the same address, so their
traffic (HTTP signalling and the ICE/DTLS/SRTP media alike) goes over that namespace's `lo`,
never over the veth: `ip link set <veth> down` would not touch it (the address stays local) and
would cut the server off from the stand-in agent instead. The drop is therefore a root qdisc on
the namespace's `lo` that holds no packet (`pfifo limit 0`): every packet between browser and
server is lost, UDP and TCP alike, while the agent link (the veth) and this test's own REST
calls (from the root namespace, over the veth) keep working. Deleting the qdisc restores `lo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
from browser import events, join, probe, wait_event

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.asyncio(loop_scope="session"),
              pytest.mark.skipif(shutil.which("tc") is None, reason="needs tc (iproute2)")]


@contextlib.contextmanager
def loopback_dropped(netns) -> Iterator[None]:
    """Lose every packet on the namespace's `lo` (browser ↔ server) until the block exits."""
    subprocess.run(netns.wrap("tc", "qdisc", "add", "dev", "lo", "root", "pfifo", "limit", "0"),
                   check=True, capture_output=True)
    try:
        yield
    finally:
        subprocess.run(netns.wrap("tc", "qdisc", "del", "dev", "lo", "root"),
                       check=True, capture_output=True)


async def create_session(server) -> dict:
    async with httpx.AsyncClient() as http:
        r = await http.post(f"{server.base_url}/api/v1/sessions", headers=server.auth, json={
            "conversation_engine": {"type": "cartesia", "agent_id": "demo", "access_token": "demo"}})
    assert r.status_code == 200, r.text
    return r.json()


async def session_row(server, sid: str) -> dict:
    async with httpx.AsyncClient() as http:
        r = await http.get(f"{server.base_url}/api/v1/sessions/{sid}", headers=server.auth)
    assert r.status_code == 200, r.text
    return r.json()


async def frames_since(page, since_ms: float, count: int, timeout: float) -> list[dict]:
    """Poll the probe until it has seen `count` frames presented after `since_ms`."""
    deadline = time.monotonic() + timeout
    while True:
        frames, _ = await probe(page)
        new = [f for f in frames if f["t"] > since_ms]
        if len(new) >= count:
            return new
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {len(new)} video frames after {since_ms} in {timeout} s")
        await asyncio.sleep(0.2)


def states_since(evs: list[dict], since_ms: float) -> list[str]:
    return [e["payload"]["state"] for e in evs
            if e["type"] == "connection_state_change" and e["t"] >= since_ms]


async def test_sdk_rejoins_after_a_network_drop(e2e_server, agent, netns, new_page) -> None:
    s = await create_session(e2e_server)
    sid = s["session_id"]
    page = await new_page()
    joined = await join(page, e2e_server.base_url, s["token"])
    assert joined["ok"], joined
    conn = await agent.next_connection(10)
    await conn.wait_started()
    await frames_since(page, joined["t0"], 25, timeout=20)       # the avatar plays
    await wait_event(page, "connection_state_change", 10, where=lambda p: p["state"] == "connected")
    first_peer = await page.evaluate("window.facecastDemo.avatar.peerId")
    assert await page.evaluate("window.facecastDemo.avatar.sessionId") == sid
    row = await session_row(e2e_server, sid)
    assert (row["state"], row["users_connected"]) == ("active", 1), row

    # drop: hold it until the SDK has given up on the connection, then restore
    mark = time.time() * 1000
    with loopback_dropped(netns):
        lost = await wait_event(page, "connection_state_change", 60, since=mark,
                                where=lambda p: p["state"] == "reconnecting")
        await asyncio.sleep(1.0)        # the new offer goes out into the dead network
        # the server session does not end while its user is away (the test reaches the
        # server over the veth, which the drop leaves alone)
        assert (await session_row(e2e_server, sid))["state"] == "active"
    restored = time.time() * 1000

    back = await wait_event(page, "connection_state_change", 90, since=lost["t"],
                            where=lambda p: p["state"] == "connected")
    states = states_since(await events(page), mark)
    assert states[:2] == ["reconnecting", "connected"], states
    assert not [e for e in await events(page) if e["type"] == "session_ended"]

    # video flows again, on the new connection
    await frames_since(page, max(back["t"], restored), 50, timeout=30)
    assert await page.evaluate("window.facecastDemo.avatar.state") == "connected"

    # the same server session, still active, now with the new peer (the old one left)
    new_peer = await page.evaluate("window.facecastDemo.avatar.peerId")
    assert new_peer and new_peer != first_peer
    assert await page.evaluate("window.facecastDemo.avatar.sessionId") == sid
    deadline = time.monotonic() + 60
    while True:
        row = await session_row(e2e_server, sid)
        if (row["state"], row["users_connected"]) == ("active", 1) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    assert (row["session_id"], row["state"], row["users_connected"]) == (sid, "active", 1), row
    assert row["end_reason"] is None, row
    # the conversation went on: no new agent call for this rejoin
    with pytest.raises(asyncio.TimeoutError):
        await agent.next_connection(0.5)

    async with httpx.AsyncClient() as http:
        await http.delete(f"{e2e_server.base_url}/api/v1/sessions/{sid}", headers=e2e_server.auth)
