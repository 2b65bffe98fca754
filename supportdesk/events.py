"""Cross-process chat events through the channel layer (group `session-<public id>`), sent on commit.

The layer is at-most-once: events carry message ids, and consumers re-read the
database (and clients resync) rather than trusting the payload.
"""
from __future__ import annotations

import logging
from typing import TypedDict

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

log = logging.getLogger(__name__)


class ChatEvent(TypedDict):
    type: str  # "chat.event" → ChatConsumer.chat_event
    kind: str  # "message" | "state" | "typing"
    message_id: int | None


def group_name(public_id: object) -> str:
    return f"session-{public_id}"


def publish(public_id: object, kind: str, message_id: int | None) -> None:
    event: ChatEvent = {"type": "chat.event", "kind": kind, "message_id": message_id}
    try:
        async_to_sync(get_channel_layer().group_send)(group_name(public_id), event)
    except Exception:  # a missed event is repaired by the client's resync
        log.exception("could not publish chat event")


def publish_on_commit(session: object, kind: str, message_id: int | None) -> None:
    public_id = session.public_id  # type: ignore[attr-defined]
    transaction.on_commit(lambda: publish(public_id, kind, message_id))
