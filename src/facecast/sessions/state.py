"""Session states and end reasons (values are part of the public API)."""

from __future__ import annotations

from enum import StrEnum


class SessionState(StrEnum):
    CREATED = "created"
    ACTIVE = "active"
    ENDED = "ended"


class EndReason(StrEnum):
    TERMINATION_COMMAND_RECEIVED = "termination_command_received"
    USER_ABSENT_TIMEOUT = "user_absent_timeout"
    MAX_DURATION_REACHED = "max_duration_reached"
    AGENT_LEFT = "agent_left"
    ENGINE_ERROR = "engine_error"
    SERVER_SHUTDOWN = "server_shutdown"


class TaskState(StrEnum):
    QUEUED = "queued"
    SPEAKING = "speaking"
    DONE = "done"
    CANCELLED = "cancelled"
    RECORDED = "recorded"   # accepted and kept, never spoken (engines that do not speak text)
