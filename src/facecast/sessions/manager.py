"""The session lifecycle: created → active → ended, exactly once, for a recorded reason.

`SessionManager` owns every live (not yet ended) session of this process: its engine secrets
(memory only), its timers, its joined peers and its runtime. Timers run on an injectable
`Clock`, so tests drive them on virtual time:

- user-absent: armed at creation and whenever the last user leaves; any join cancels it;
- max-duration: armed at creation.

A session ends on the first of DELETE, a timer, the engine ending or failing, or shutdown.
`end()` is idempotent and race-free: the first caller marks the session as ending before any
await, records the end in the database, then tears the runtime down (the runtime tells the
SDK why before closing the peers). If the database refuses that write (a locked SQLite file,
a dropped PostgreSQL connection), the session still ends; the write is retried in the
background (`END_RECORD_RETRY_S`) and reads of the session show the end meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import func, select, update

from facecast.clock import Clock, TimerHandle
from facecast.engines.config import EngineConfig, TextEchoEngineConfig
from facecast.errors import InvalidSessionState, LimitsExceeded, SessionNotFound, Unauthorized
from facecast.sessions.db import Database, SessionRow, TaskRow
from facecast.sessions.state import EndReason, SessionState, TaskState
from facecast.sessions.tokens import TokenSigner

if TYPE_CHECKING:
    from facecast.sessions.runtime import Peer

log = logging.getLogger(__name__)

MAX_TASKS_PER_SESSION = 1000
END_RECORD_RETRY_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)  # then every 60 s until it is written
END_RECORD_SHUTDOWN_S = 5.0    # shutdown's last try per unrecorded end


class Runtime(Protocol):
    """What the manager needs of a session runtime (see `facecast.sessions.runtime`)."""

    def attach_peer(self, peer: Peer) -> None: ...
    def detach_peer(self, peer: Peer) -> None: ...
    async def start(self) -> None: ...
    async def submit_task(self, task_id: str, text: str) -> None: ...
    async def stop(self, reason: EndReason, error_code: str | None, message: str | None) -> None: ...


@dataclass
class SessionSpec:
    """A validated create request (engine secrets included; never persisted)."""

    avatar_id: str
    render_model: str
    background: str
    engine: EngineConfig
    user_absent_timeout: int
    max_duration: int


@dataclass(eq=False)
class LiveSession:
    id: str
    spec: SessionSpec
    created_at: datetime
    started_at: datetime | None = None
    peers: dict[str, Peer] = field(default_factory=dict)
    runtime: Runtime | None = None
    ending: bool = False
    absent_timer: TimerHandle | None = None
    max_timer: TimerHandle | None = None
    pending_tasks: list[tuple[str, str]] = field(default_factory=list)
    tasks_flushed: bool = False   # pending tasks handed to the runtime (keeps submission order)
    task_count: int = 0
    db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)


RuntimeFactory = Callable[[LiveSession, "SessionManager"], Runtime]
EventListener = Callable[[dict[str, Any]], None]


class SessionManager:
    def __init__(self, db: Database, signer: TokenSigner, clock: Clock, *,
                 runtime_factory: RuntimeFactory, max_sessions: int = 10) -> None:
        self.db = db
        self.signer = signer
        self.clock = clock
        self.runtime_factory = runtime_factory
        self.max_sessions = max_sessions
        self._live: dict[str, LiveSession] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self.created_total = 0
        self.ended_total: dict[str, int] = {}
        self._listeners: list[EventListener] = []
        # ends the database has not taken yet: session id → the SessionRow values to write
        self._unrecorded: dict[str, dict[str, Any]] = {}
        self._retry_timers: dict[str, TimerHandle] = {}

    def subscribe(self, listener: EventListener) -> None:
        """Lifecycle events (`session.started`, `session.ended`) as plain dicts, e.g. for webhooks."""
        self._listeners.append(listener)

    def _publish(self, event: dict[str, Any]) -> None:
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("lifecycle listener failed")

    # -- background work -------------------------------------------------------------------
    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def settle(self) -> None:
        """Wait until the background work spawned so far (and what it spawns) is done."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- start-up / shutdown ---------------------------------------------------------------
    async def recover(self) -> int:
        """End sessions a crash left behind (their engine secrets are gone with the process)."""
        now = self.clock.now()
        async with self.db.session() as s, s.begin():
            result = await s.execute(
                update(SessionRow).where(SessionRow.state != SessionState.ENDED.value)
                .values(state=SessionState.ENDED.value, end_reason=EndReason.SERVER_SHUTDOWN.value,
                        end_message="server restarted", ended_at=now))
            await s.execute(
                update(TaskRow).where(TaskRow.state.in_([TaskState.QUEUED.value, TaskState.SPEAKING.value]))
                .values(state=TaskState.CANCELLED.value, updated_at=now))
        count = int(result.rowcount or 0)  # type: ignore[attr-defined]
        if count:
            log.warning("marked %d session(s) left over by a previous run as ended (server_shutdown)", count)
        return count

    async def shutdown(self) -> None:
        self._closed = True
        await asyncio.gather(*(self.end(sid, EndReason.SERVER_SHUTDOWN) for sid in list(self._live)),
                             return_exceptions=True)
        await self.settle()
        for timer in self._retry_timers.values():
            timer.cancel()
        self._retry_timers.clear()
        for sid in list(self._unrecorded):  # a last try; `recover()` at the next start does the rest
            try:
                async with asyncio.timeout(END_RECORD_SHUTDOWN_S):
                    await self._retry_record_end(sid, attempt=-1)
            except TimeoutError:
                log.warning("the database did not answer; the end is recorded at the next start",
                            extra={"session_id": sid})

    # -- create / read ---------------------------------------------------------------------
    @property
    def live_count(self) -> int:
        return len(self._live)

    @property
    def users_connected(self) -> int:
        return sum(len(live.peers) for live in self._live.values())

    def live(self, session_id: str) -> LiveSession | None:
        return self._live.get(session_id)

    async def create(self, spec: SessionSpec, api_key_id: str | None) -> tuple[str, str]:
        if self._closed:
            raise InvalidSessionState("the server is shutting down", code="server_shutdown")
        if len(self._live) >= self.max_sessions:
            raise LimitsExceeded(f"concurrent session limit reached ({self.max_sessions})")
        sid = "sess_" + secrets.token_hex(12)
        now = self.clock.now()
        live = LiveSession(id=sid, spec=spec, created_at=now)
        self._live[sid] = live  # reserve the slot before awaiting, so the limit holds under races
        try:
            async with self.db.session() as s, s.begin():
                s.add(SessionRow(
                    id=sid, api_key_id=api_key_id, state=SessionState.CREATED.value,
                    avatar_id=spec.avatar_id, render_model=spec.render_model,
                    background=spec.background, engine_type=spec.engine.type,
                    engine=spec.engine.public(), user_absent_timeout=spec.user_absent_timeout,
                    max_duration=spec.max_duration, created_at=now, billed_seconds=0))
        except BaseException:
            self._live.pop(sid, None)
            raise
        live.absent_timer = self.clock.call_later(
            spec.user_absent_timeout, lambda: self.request_end(sid, EndReason.USER_ABSENT_TIMEOUT))
        live.max_timer = self.clock.call_later(
            spec.max_duration, lambda: self.request_end(sid, EndReason.MAX_DURATION_REACHED))
        self.created_total += 1
        log.info("session created (engine=%s avatar=%s)", spec.engine.type, spec.avatar_id,
                 extra={"session_id": sid})
        return sid, self.signer.issue(sid, now)

    async def get_row(self, session_id: str) -> tuple[SessionRow, list[TaskRow]]:
        async with self.db.session() as s:
            row = await s.get(SessionRow, session_id)
            if row is None:
                raise SessionNotFound(f"no session {session_id!r}", field="session_id")
            tasks = (await s.execute(select(TaskRow).where(TaskRow.session_id == session_id)
                                     .order_by(TaskRow.seq))).scalars().all()
        self._overlay_end(row, list(tasks))
        return row, list(tasks)

    async def list_rows(self, state: SessionState | None, limit: int, offset: int) -> list[SessionRow]:
        q = select(SessionRow).order_by(SessionRow.created_at.desc(), SessionRow.id).limit(limit).offset(offset)
        if state is not None:
            q = q.where(SessionRow.state == state.value)
        async with self.db.session() as s:
            rows = list((await s.execute(q)).scalars().all())
        for row in rows:
            self._overlay_end(row)
        if state is not None:   # an end not yet written changes the state the query saw
            rows = [row for row in rows if row.state == state.value]
        return rows

    # -- tasks -----------------------------------------------------------------------------
    async def add_task(self, session_id: str, text: str) -> str:
        live = self._live.get(session_id)
        if live is None or live.ending:
            await self.get_row(session_id)  # 404 when unknown
            raise InvalidSessionState("the session has ended", code="session_ended")
        if live.task_count >= MAX_TASKS_PER_SESSION:
            raise LimitsExceeded(f"at most {MAX_TASKS_PER_SESSION} tasks per session")
        live.task_count += 1
        task_id = "task_" + secrets.token_hex(10)
        speaks = isinstance(live.spec.engine, TextEchoEngineConfig)
        state = TaskState.QUEUED if speaks else TaskState.RECORDED
        now = self.clock.now()
        async with live.db_lock, self.db.session() as s, s.begin():
            if live.ending:  # end() ran while we waited for the lock
                raise InvalidSessionState("the session has ended", code="session_ended")
            s.add(TaskRow(id=task_id, session_id=session_id, seq=live.task_count, text=text,
                          state=state.value, created_at=now, updated_at=now))
        if live.runtime is not None and live.tasks_flushed:
            await live.runtime.submit_task(task_id, text)
        else:
            live.pending_tasks.append((task_id, text))  # delivered once the runtime has started
        return task_id

    def set_task_state(self, session_id: str, task_id: str, state: TaskState) -> None:
        live = self._live.get(session_id)
        if live is None:
            return
        self.spawn(self._write_task_state(live, task_id, state), name=f"task-state-{task_id}")

    async def _write_task_state(self, live: LiveSession, task_id: str, state: TaskState) -> None:
        async with live.db_lock, self.db.session() as s, s.begin():
            await s.execute(update(TaskRow).where(TaskRow.id == task_id)
                            .values(state=state.value, updated_at=self.clock.now()))

    # -- joining ---------------------------------------------------------------------------
    def verify_token(self, token: str) -> str:
        claims = self.signer.verify(token, self.clock.now())
        live = self._live.get(claims.session_id)
        if live is None or live.ending:
            raise InvalidSessionState("the session has ended", code="session_ended")
        if claims.expired and live.started_at is None:
            raise Unauthorized("the session token has expired", code="token_expired")
        return claims.session_id

    async def join(self, session_id: str, peer: Peer) -> Runtime:
        live = self._live.get(session_id)
        if live is None or live.ending:
            raise InvalidSessionState("the session has ended", code="session_ended")
        if live.absent_timer is not None:
            live.absent_timer.cancel()
            live.absent_timer = None
        live.peers[peer.peer_id] = peer
        first = live.runtime is None
        if first:
            live.runtime = self.runtime_factory(live, self)
            live.started_at = self.clock.now()
        runtime = live.runtime
        assert runtime is not None
        runtime.attach_peer(peer)
        log.info("user joined (peer=%s, %d connected)", peer.peer_id, len(live.peers),
                 extra={"session_id": session_id})
        if first:
            assert live.started_at is not None
            async with live.db_lock, self.db.session() as s, s.begin():
                await s.execute(update(SessionRow).where(SessionRow.id == session_id)
                                .values(state=SessionState.ACTIVE.value, started_at=live.started_at))
            self._publish({"type": "session.started", "session_id": session_id,
                           "started_at": live.started_at.isoformat()})
            self.spawn(self._start_runtime(live, runtime), name=f"runtime-start-{session_id}")
        return runtime

    async def _start_runtime(self, live: LiveSession, runtime: Runtime) -> None:
        try:
            await runtime.start()
        except Exception as exc:  # the runtime reports its own expected failures; this is a bug
            log.exception("session runtime failed to start", extra={"session_id": live.id})
            await self.end(live.id, EndReason.ENGINE_ERROR, error_code="internal_error",
                           message=f"the session failed to start ({type(exc).__name__})")
            return
        while live.pending_tasks and not live.ending:
            task_id, text = live.pending_tasks.pop(0)
            await runtime.submit_task(task_id, text)
        live.tasks_flushed = True

    async def leave(self, session_id: str, peer: Peer) -> None:
        live = self._live.get(session_id)
        if live is None or live.peers.pop(peer.peer_id, None) is None:
            return
        if live.runtime is not None:
            live.runtime.detach_peer(peer)
        log.info("user left (peer=%s, %d connected)", peer.peer_id, len(live.peers),
                 extra={"session_id": session_id})
        if not live.peers and not live.ending and live.absent_timer is None:
            live.absent_timer = self.clock.call_later(
                live.spec.user_absent_timeout,
                lambda: self.request_end(session_id, EndReason.USER_ABSENT_TIMEOUT))

    # -- ending ----------------------------------------------------------------------------
    def request_end(self, session_id: str, reason: EndReason, *, error_code: str | None = None,
                    message: str | None = None) -> None:
        """End from a callback (timer, engine): runs `end()` in the background."""
        live = self._live.get(session_id)
        if live is None or live.ending:
            return
        self.spawn(self.end(session_id, reason, error_code=error_code, message=message),
                   name=f"end-{session_id}")

    async def end(self, session_id: str, reason: EndReason, *, error_code: str | None = None,
                  message: str | None = None) -> bool:
        """End a session. Returns False if it had already ended (or is ending)."""
        live = self._live.get(session_id)
        if live is None or live.ending:
            return False
        live.ending = True  # before any await: whoever comes second is a no-op
        if message is not None:  # it may come from a remote party: keep it storable everywhere
            message = message.replace("\x00", "\ufffd")[:1000]
        for timer in (live.absent_timer, live.max_timer):
            if timer is not None:
                timer.cancel()
        now = self.clock.now()
        billed = 0
        if live.started_at is not None:
            billed = max(0, math.ceil((now - live.started_at).total_seconds()))
        values = {"state": SessionState.ENDED.value, "end_reason": reason.value,
                  "end_message": message, "ended_at": now, "billed_seconds": billed}
        try:
            async with live.db_lock:
                await self._record_end(session_id, values)
        except Exception:
            log.exception("could not record the session's end; retrying in the background",
                          extra={"session_id": session_id})
            self._unrecorded[session_id] = values
            self._schedule_record_retry(session_id, 0)
        finally:
            self.ended_total[reason.value] = self.ended_total.get(reason.value, 0) + 1
            self._publish({
                "type": "session.ended", "session_id": session_id, "end_reason": reason.value,
                "end_message": message, "created_at": live.created_at.isoformat(),
                "started_at": live.started_at.isoformat() if live.started_at else None,
                "ended_at": now.isoformat(), "billed_seconds": billed,
                "avatar_id": live.spec.avatar_id, "engine_type": live.spec.engine.type})
            log.info("session ended: %s%s", reason.value, f" ({message})" if message else "",
                     extra={"session_id": session_id})
            runtime = live.runtime
            try:
                if runtime is not None:
                    await runtime.stop(reason, error_code, message)
            finally:
                self._live.pop(session_id, None)
        return True

    async def _record_end(self, session_id: str, values: dict[str, Any]) -> None:
        async with self.db.session() as s, s.begin():
            await s.execute(
                update(SessionRow)
                .where(SessionRow.id == session_id, SessionRow.state != SessionState.ENDED.value)
                .values(**values))
            await s.execute(
                update(TaskRow).where(TaskRow.session_id == session_id,
                                      TaskRow.state.in_([TaskState.QUEUED.value, TaskState.SPEAKING.value]))
                .values(state=TaskState.CANCELLED.value, updated_at=values["ended_at"]))

    def _schedule_record_retry(self, session_id: str, attempt: int) -> None:
        delay = END_RECORD_RETRY_S[min(attempt, len(END_RECORD_RETRY_S) - 1)]

        def retry() -> None:
            self.spawn(self._retry_record_end(session_id, attempt + 1),
                       name=f"record-end-{session_id}")

        self._retry_timers[session_id] = self.clock.call_later(delay, retry)

    async def _retry_record_end(self, session_id: str, attempt: int) -> None:
        """Write an end the database refused before; `attempt` -1 is shutdown's last try."""
        self._retry_timers.pop(session_id, None)
        values = self._unrecorded.get(session_id)
        if values is None:
            return
        try:
            await self._record_end(session_id, values)
        except Exception as exc:
            log.warning("recording the session's end failed again (%s)", type(exc).__name__,
                        extra={"session_id": session_id})
            if attempt >= 0 and not self._closed:
                self._schedule_record_retry(session_id, attempt)
            return
        self._unrecorded.pop(session_id, None)
        log.info("session end recorded after a database failure", extra={"session_id": session_id})

    def _overlay_end(self, row: SessionRow, tasks: list[TaskRow] | None = None) -> None:
        """Show an end the database has not taken yet on a row just read (never flushed)."""
        values = self._unrecorded.get(row.id)
        if values is None or row.state == SessionState.ENDED.value:
            return
        for key, value in values.items():
            setattr(row, key, value)
        for task in tasks or []:
            if task.state in (TaskState.QUEUED.value, TaskState.SPEAKING.value):
                task.state = TaskState.CANCELLED.value

    async def count_rows(self, state: SessionState | None = None) -> int:
        q = select(func.count()).select_from(SessionRow)
        if state is not None:
            q = q.where(SessionRow.state == state.value)
        async with self.db.session() as s:
            return int((await s.execute(q)).scalar_one())
