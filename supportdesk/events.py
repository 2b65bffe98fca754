"""Cross-process chat events through the channel layer (group `session-<public id>`), sent on commit.

The layer is at-most-once: events carry message ids, and consumers re-read the
database (and clients resync) rather than trusting the payload.
"""
from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
from typing import TypedDict

from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)
SEND_TIMEOUT_S = 2.0
MAX_PENDING = 10_000


class ChatEvent(TypedDict):
    type: str  # "chat.event" → ChatConsumer.chat_event
    kind: str  # "message" | "state" | "typing"
    message_id: int | None


def group_name(public_id: object) -> str:
    return f"session-{public_id}"


def publish(public_id: object, kind: str, message_id: int | None) -> None:
    """Queue the event for the channel layer; the caller never waits on Redis.

    Callers are request threads and the agent's threads, where a blocking group_send
    cost about 0.6 ms before a reply could start. One sender per process keeps the order.
    """
    event: ChatEvent = {"type": "chat.event", "kind": kind, "message_id": message_id}
    _sender().submit(group_name(public_id), event)


class _Sender:
    """A daemon thread with its own event loop that sends queued events one by one."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue[tuple[str, ChatEvent]] = asyncio.Queue()
        self.idle = threading.Event()
        self.idle.set()
        self.pending = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._run, name="chat-events", daemon=True).start()

    def submit(self, group: str, event: ChatEvent) -> None:
        with self.lock:
            if self.pending >= MAX_PENDING:  # Redis has been down a while: drop, clients resync
                log.warning("chat event dropped: %s events waiting for the channel layer", self.pending)
                return
            self.pending += 1
            self.idle.clear()
        self.loop.call_soon_threadsafe(self.queue.put_nowait, (group, event))

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._drain())

    async def _drain(self) -> None:
        while True:
            group, event = await self.queue.get()
            try:
                # Bounded: with Redis slow or down, one event must not hold up the rest for long.
                await asyncio.wait_for(get_channel_layer().group_send(group, event), SEND_TIMEOUT_S)
            except Exception:  # a missed event is repaired by the client's resync
                log.exception("could not publish chat event")
            with self.lock:
                self.pending -= 1
                if not self.pending:
                    self.idle.set()


_senders: dict[int, _Sender] = {}
_senders_lock = threading.Lock()


def _sender() -> _Sender:
    # One per process: a forked Celery worker must not use its parent's thread and loop.
    pid = os.getpid()
    with _senders_lock:
        if pid not in _senders:
            _senders[pid] = _Sender()
            atexit.register(flush, 1.0)  # a restart should not drop what is queued
        return _senders[pid]


def flush(timeout: float = 5.0) -> bool:
    """Wait until every queued event has been sent (tests, shutdown); False on timeout."""
    sender = _senders.get(os.getpid())
    return sender is None or sender.idle.wait(timeout)


def publish_on_commit(session: object, kind: str, message_id: int | None) -> None:
    public_id = session.public_id  # type: ignore[attr-defined]
    transaction.on_commit(lambda: publish(public_id, kind, message_id))
