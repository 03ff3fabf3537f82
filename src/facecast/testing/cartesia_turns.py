"""Turn bookkeeping of one stand-in call: numbering, text, start/end times and the turn events
(`turn_started`, `turn_output_text_delta`, `turn_ended`) Managed Agents (and newer Line
versions) send."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Emit = Callable[..., Awaitable[None]]   # emit(event_name, **fields)


class Turns:
    def __init__(self, emit: Emit, elapsed: Callable[[], float]) -> None:
        self._emit = emit
        self._elapsed = elapsed            # seconds since the call started
        self._seq = 0
        self.agent: dict[str, Any] | None = None
        self.user: dict[str, Any] | None = None

    async def start_user(self) -> None:
        self.user = await self._start("user")

    async def end_user(self) -> None:
        turn, self.user = self.user, None
        if turn is not None:
            await self._end(turn, interrupted=False)

    async def agent_speaks(self, text: str | None) -> None:
        """Agent speech started: open the agent's turn if needed and add `text` to it."""
        if self.agent is None:
            self.agent = await self._start("agent")
        if text:
            self.agent["text"] = f"{self.agent['text']} {text}".strip()
            await self._emit("turn_output_text_delta", turn=self.agent["turn"], role="agent",
                             text=text)

    async def end_agent(self, *, interrupted: bool) -> None:
        turn, self.agent = self.agent, None
        if turn is not None:
            await self._end(turn, interrupted=interrupted)

    async def _start(self, role: str) -> dict[str, Any]:
        self._seq += 1
        info = {"turn": self._seq, "role": role, "text": "",
                "start_time": round(self._elapsed(), 3)}
        await self._emit("turn_started", turn=info["turn"], role=role,
                         start_time=info["start_time"])
        return info

    async def _end(self, info: dict[str, Any], *, interrupted: bool) -> None:
        await self._emit("turn_ended", turn=info["turn"], role=info["role"], text=info["text"],
                         interrupted=interrupted, start_time=info["start_time"],
                         end_time=round(self._elapsed(), 3), tool_calls=[])
