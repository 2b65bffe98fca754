"""In-process hub: per chat session, the running agent task and the sockets listening to it.

The agent runs as an asyncio task owned by the SESSION, not by a socket, so a dropped
connection never kills a reply: the socket that reconnects subscribes again and gets
the text so far, then the live tokens. Tokens go straight from the task to the
subscribers' queues (no Redis hop per token); only whole-message events cross
processes, through the channel layer.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.conf import settings
from django.db import close_old_connections

from conversations.runner import ReplyEvent, respond

log = logging.getLogger(__name__)
# The agent's database and model work runs on a few threads of its own, one per session
# at a time, instead of queueing behind every socket on Django's single sync thread.
AGENT_THREADS = 8
_executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"agent-{n}") for n in range(AGENT_THREADS)]

if settings.LLM_MODEL:
    # litellm takes seconds to import; do it at start-up, never inside the event loop
    # during a first reply (it would stall every socket and the channel layer).
    import agent.generation  # noqa: F401


async def run_sync(session_id: int, function, *args: object):  # noqa: ANN001, ANN201 - any sync callable
    """Run ORM work for a session on that session's thread (connections handled as in Channels)."""
    from channels.db import database_sync_to_async

    async with ThreadSensitiveContext(executor=_executors[session_id % AGENT_THREADS]):
        return await database_sync_to_async(function)(*args)


def close_thread_connections() -> None:
    """Close the database connections the agent threads hold (tests drop their database)."""
    from django.db import connections

    for executor in _executors:
        executor.submit(connections.close_all).result()


@dataclass(frozen=True)
class HubEvent:
    """A ReplyEvent for one user message; `offset` is where a token starts in the reply text."""

    kind: str  # "start" | "token" | "restart" | "done" | "skipped"
    message_id: int
    reply_id: int | None
    text: str = ""
    offset: int = 0


@dataclass
class _Session:
    pending: deque[tuple[int, str]] = field(default_factory=deque)
    subscribers: set[asyncio.Queue] = field(default_factory=set)
    task: asyncio.Task | None = None
    message_id: int | None = None  # the user message being answered
    reply_id: int | None = None
    text: str = ""


class Hub:
    def __init__(self) -> None:
        self._sessions: dict[int, _Session] = {}

    def _get(self, session_id: int) -> _Session:
        return self._sessions.setdefault(session_id, _Session())

    def _forget_if_idle(self, session_id: int) -> None:
        state = self._sessions.get(session_id)
        if state and not state.subscribers and not state.pending and not self._alive(state):
            del self._sessions[session_id]

    @staticmethod
    def _alive(state: _Session) -> bool:
        task = state.task
        # A task left behind by a closed event loop (tests, async_to_sync) is dead.
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def subscribe(self, session_id: int, queue: asyncio.Queue) -> None:
        self._get(session_id).subscribers.add(queue)

    def unsubscribe(self, session_id: int, queue: asyncio.Queue) -> None:
        self._get(session_id).subscribers.discard(queue)
        self._forget_if_idle(session_id)

    def is_busy(self, session_id: int, message_id: int) -> bool:
        state = self._sessions.get(session_id)
        if state is None:
            return False
        queued = any(mid == message_id for mid, _ in state.pending)
        return queued or (state.message_id == message_id and self._alive(state))

    def submit(self, session_id: int, message_id: int, request_id: str = "") -> None:
        """Answer `message_id` after any reply already running for this session (each once)."""
        if self.is_busy(session_id, message_id):
            return
        state = self._get(session_id)
        state.pending.append((message_id, request_id))
        if not self._alive(state):
            # A fresh context: the task outlives the request or socket that started it.
            state.task = asyncio.get_running_loop().create_task(self._work(session_id), context=contextvars.Context())

    def snapshot(self, session_id: int, reply_id: int) -> str | None:
        """The text streamed so far by a reply running here, None if it is not running here."""
        state = self._sessions.get(session_id)
        if state and state.reply_id == reply_id and self._alive(state):
            return state.text
        return None

    def cancel(self, session_id: int) -> bool:
        """Stop the session's bot reply (a human took over); the runner marks it interrupted."""
        state = self._sessions.get(session_id)
        if state is None or not self._alive(state):
            return False
        state.pending.clear()
        state.task.cancel()  # type: ignore[union-attr]
        return True

    async def _work(self, session_id: int) -> None:
        state = self._get(session_id)
        try:
            async with ThreadSensitiveContext(executor=_executors[session_id % AGENT_THREADS]):
                while state.pending:
                    message_id, request_id = state.pending.popleft()
                    await self._answer(state, session_id, message_id, request_id)
                    # These threads see no request signals: obey CONN_MAX_AGE/health checks here.
                    await sync_to_async(close_old_connections)()
        finally:
            state.message_id, state.reply_id, state.text = None, None, ""
            if state.task is asyncio.current_task():
                state.task = None
            self._forget_if_idle(session_id)

    async def _answer(self, state: _Session, session_id: int, message_id: int, request_id: str) -> None:
        state.message_id, state.reply_id, state.text = message_id, None, ""
        try:
            async for event in respond(session_id=session_id, message_id=message_id, request_id=request_id):
                self._publish(state, message_id, event)
        except asyncio.CancelledError:
            self._publish(state, message_id, ReplyEvent("done", state.reply_id))
            raise
        except Exception:  # one broken reply must not stop the session's queue
            log.exception("reply task failed")
            self._publish(state, message_id, ReplyEvent("done", state.reply_id))

    def _publish(self, state: _Session, message_id: int, event: ReplyEvent) -> None:
        offset = len(state.text)
        if event.kind == "start":
            state.reply_id, state.text = event.reply_id, ""
        elif event.kind == "token":
            state.text += event.text
        elif event.kind == "restart":
            state.text, offset = "", 0
        hub_event = HubEvent(event.kind, message_id, event.reply_id, event.text, offset)
        for queue in list(state.subscribers):
            queue.put_nowait(hub_event)

    async def stream(self, session_id: int, message_id: int, request_id: str = "") -> AsyncIterator[HubEvent]:
        """Answer a message and yield its events; leaving early does not stop the reply."""
        queue: asyncio.Queue[HubEvent] = asyncio.Queue()
        self.subscribe(session_id, queue)
        try:
            self.submit(session_id, message_id, request_id)
            while True:
                event = await queue.get()
                if event.message_id != message_id:
                    continue
                yield event
                if event.kind in ("done", "skipped"):
                    return
        finally:
            self.unsubscribe(session_id, queue)


hub = Hub()
